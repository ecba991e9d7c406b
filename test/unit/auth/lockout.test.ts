import { describe, expect, it } from 'vitest';
import { SecretLockout, lockoutPolicy, type LockEvent, type LockoutPolicy } from '../../../src/auth/lockout.js';
import { DEFAULTS } from '../../../src/config/schema.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';

const POLICY: LockoutPolicy = { userFailures: 3, appFailures: 5, windowSeconds: 60, lockSeconds: 300 };

function setup(policy = POLICY) {
  let now = 1_700_000_000_000;
  const events: LockEvent[] = [];
  const refused: string[] = [];
  const lockout = new SecretLockout(policy, { now: () => now, onLock: (e) => events.push(e), onRefused: (f) => refused.push(f) });
  return { lockout, events, refused, advance: (ms: number) => (now += ms) };
}

describe('SecretLockout', () => {
  it("locks a user's code after a burst of failures, for lockSeconds, then lets it be tried again", () => {
    const { lockout, events, refused, advance } = setup();
    lockout.fail('step1-otp', 'vpn', 'alice');
    lockout.fail('step1-otp', 'vpn', 'alice');
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(false);
    lockout.fail('step1-otp', 'vpn', 'alice');
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(true);
    expect(events).toEqual([{ factor: 'step1-otp', app: 'vpn', user: 'alice', failures: 3, windowSeconds: 60, lockSeconds: 300 }]);
    expect(refused).toEqual(['step1-otp']);
    advance(299_999);
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(true);
    advance(1);
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(false);
    // The count starts again from nothing after a lock.
    lockout.fail('step1-otp', 'vpn', 'alice');
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(false);
  });

  it('counts only the failures inside the window', () => {
    const { lockout, advance } = setup();
    for (let i = 0; i < 10; i++) {
      lockout.fail('step2-token', 'vpn', 'bob');
      advance(30_001); // two failures per window at most
    }
    expect(lockout.isLocked('step2-token', 'vpn', 'bob')).toBe(false);
  });

  it("keeps each user's code, each step and each app apart: a flood against one locks no one else", () => {
    const { lockout } = setup();
    for (let i = 0; i < 1000; i++) lockout.fail('step1-otp', 'vpn', 'alice');
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(true);
    expect(lockout.isLocked('step1-otp', 'vpn', 'bob')).toBe(false);
    expect(lockout.isLocked('step2-token', 'vpn', 'alice')).toBe(false);
    expect(lockout.isLocked('step1-otp', 'ssh', 'alice')).toBe(false);
    expect(lockout.isLocked('step1-key', 'vpn')).toBe(false);
  });

  it('locks an app after its own threshold of wrong keys, per step', () => {
    const { lockout, events } = setup();
    for (let i = 0; i < 4; i++) lockout.fail('step1-key', 'vpn');
    expect(lockout.isLocked('step1-key', 'vpn')).toBe(false);
    lockout.fail('step1-key', 'vpn');
    expect(lockout.isLocked('step1-key', 'vpn')).toBe(true);
    expect(lockout.isLocked('step2-key', 'vpn')).toBe(false);
    expect(lockout.isLocked('step1-key', 'ssh')).toBe(false);
    expect(events).toEqual([{ factor: 'step1-key', app: 'vpn', failures: 5, windowSeconds: 60, lockSeconds: 300 }]);
  });

  it('never locks with a threshold of 0, and takes a new policy without forgetting a lock', () => {
    const { lockout } = setup({ ...POLICY, userFailures: 0 });
    for (let i = 0; i < 100; i++) lockout.fail('step1-otp', 'vpn', 'alice');
    expect(lockout.isLocked('step1-otp', 'vpn', 'alice')).toBe(false);
    for (let i = 0; i < 5; i++) lockout.fail('step1-key', 'vpn');
    lockout.setPolicy({ ...POLICY, appFailures: 0 });
    expect(lockout.isLocked('step1-key', 'vpn')).toBe(true);
  });

  it('takes its policy from the config, with defaults an operator would expect', () => {
    expect(
      lockoutPolicy({
        lockoutUserFailures: DEFAULTS.lockoutUserFailures,
        lockoutAppFailures: DEFAULTS.lockoutAppFailures,
        lockoutWindowSeconds: DEFAULTS.lockoutWindowSeconds,
        lockoutSeconds: DEFAULTS.lockoutSeconds,
      }),
    ).toEqual({
      userFailures: 10,
      appFailures: 100,
      windowSeconds: 600,
      lockSeconds: 900,
    });
  });

  it('has its metrics from the start, at 0', async () => {
    const text = await createDaemonMetrics(() => 0).registry.metrics();
    expect(text).toContain('knockport_lockouts_total{factor="step1-otp"} 0\n');
    expect(text).toContain('knockport_lockout_refusals_total{factor="step2-key"} 0\n');
  });
});
