/** The budget settings: per-source prefix lengths and the per-secret lockout. */
import { describe, expect, it } from 'vitest';
import { expectRefusedOnce, load, VALID } from './helpers.js';

const withGlobal = (lines: string) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n${lines}`);

describe('budget settings', () => {
  it('default to per-/32 and per-/64 sources and a lockout after 10 wrong codes or 100 wrong keys in 10 minutes, for 15 minutes', () => {
    expect(load(VALID).global).toMatchObject({
      sourcePrefixV4: 32,
      sourcePrefixV6: 64,
      lockoutUserFailures: 10,
      lockoutAppFailures: 100,
      lockoutWindowSeconds: 600,
      lockoutSeconds: 900,
    });
  });

  it('read every key, 0 turning a lock off', () => {
    const text = withGlobal(
      '  source_prefix_v4: 24\n  source_prefix_v6: 56\n  lockout_user_failures: 5\n  lockout_app_failures: 0\n  lockout_window_seconds: 300\n  lockout_seconds: 3600\n',
    );
    expect(load(text).global).toMatchObject({
      sourcePrefixV4: 24,
      sourcePrefixV6: 56,
      lockoutUserFailures: 5,
      lockoutAppFailures: 0,
      lockoutWindowSeconds: 300,
      lockoutSeconds: 3600,
    });
  });

  it('refuse values that make no budget', () => {
    expectRefusedOnce(withGlobal('  source_prefix_v6: 8\n'), 'global.source_prefix_v6', 'source_prefix_v6', /16|at least|>=/);
    expectRefusedOnce(withGlobal('  lockout_user_failures: -1\n'), 'global.lockout_user_failures', 'lockout_user_failures', /0|at least|>=/);
    expectRefusedOnce(withGlobal('  lockout_seconds: 0\n'), 'global.lockout_seconds', 'lockout_seconds', /1|at least|>=/);
  });
});
