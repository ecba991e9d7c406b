/**
 * `run` checks its capabilities before touching anything: which are missing, from the process's
 * effective set, and one line saying what each is for and how to grant it.
 */
import { describe, expect, it } from 'vitest';
import {
  effectiveCapabilities,
  missingCapabilities,
  missingCapabilityMessage,
  MissingCapabilityError,
  requireCapabilities,
} from '../../../src/cli/capabilities.js';
import { SetupExitCode } from '../../../src/shared/errors.js';
import { load, VALID } from '../config/helpers.js';

const STATUS = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
const bit = (n: number) => 1n << BigInt(n);
const ADMIN = bit(12);
const RAW = bit(13);
const BIND = bit(10);

describe('capabilities', () => {
  it('reads the effective set from /proc/self/status', () => {
    expect(effectiveCapabilities(STATUS('000001ffffffffff'))).toBe(0x1ffffffffffn);
    expect(effectiveCapabilities(STATUS('0000000000003400'))).toBe(ADMIN | RAW | BIND);
    expect(effectiveCapabilities('Name:\tnode\n')).toBeUndefined();
  });

  it('needs CAP_NET_ADMIN and CAP_NET_RAW, and CAP_NET_BIND_SERVICE only for an HTTPS port below ip_unprivileged_port_start', () => {
    const on443 = load(VALID);
    const on8443 = load(VALID.replace('global:\n', 'global:\n  https_port: 8443\n'));
    expect(missingCapabilities(on443, ADMIN | RAW | BIND, 1024)).toEqual([]);
    expect(missingCapabilities(on443, 0n, 1024)).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_NET_BIND_SERVICE']);
    expect(missingCapabilities(on443, ADMIN | RAW, 1024)).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(missingCapabilities(on443, ADMIN | RAW, 0)).toEqual([]);
    expect(missingCapabilities(on8443, ADMIN | RAW, 1024)).toEqual([]);
    expect(missingCapabilities(on8443, RAW, 1024)).toEqual(['CAP_NET_ADMIN']);
  });

  it('says it in one line: what is missing, what for, how to grant it', () => {
    const message = missingCapabilityMessage(['CAP_NET_ADMIN', 'CAP_NET_RAW'], 'knock-port (uid 998)');
    expect(message).not.toContain('\n');
    expect(message).toMatch(
      /^the daemon lacks CAP_NET_ADMIN \(firewall rules, NFQUEUE\/NFLOG capture, conntrack\), CAP_NET_RAW \(.*\): it runs as user knock-port \(uid 998\) without them\./,
    );
    expect(message).toContain('Run it as root');
    expect(message).toContain('AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE');
    expect(new MissingCapabilityError(message).exitCode).toBe(SetupExitCode.missingCapability);
  });

  it('root with every capability passes', () => {
    if (process.getuid?.() !== 0) return;
    expect(() => requireCapabilities(load(VALID))).not.toThrow();
  });
});
