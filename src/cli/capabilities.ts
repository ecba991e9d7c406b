/**
 * The capabilities `run` needs, checked before it touches anything: without them every firewall,
 * capture and raw-socket call fails with a bare "Operation not permitted", and `capture: auto`
 * would even blame the kernel. One line says which capability is missing and how to grant it.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { KnockPortError, SetupExitCode } from '../shared/errors.js';
import { processIdentity } from '../shared/read-error.js';

/** Capability numbers (linux/capability.h) and what the daemon uses each for. */
const NEEDED = {
  CAP_NET_ADMIN: { bit: 12, for: 'firewall rules, NFQUEUE/NFLOG capture, conntrack' },
  CAP_NET_RAW: { bit: 13, for: 'the raw socket of step-1 SYN-ACKs and resets' },
  CAP_NET_BIND_SERVICE: { bit: 10, for: 'listening on a port below ip_unprivileged_port_start' },
} as const;

type CapabilityName = keyof typeof NEEDED;

export class MissingCapabilityError extends KnockPortError {
  override readonly exitCode = SetupExitCode.missingCapability;
}

/** The effective capability set of this process, from the `CapEff:` line of /proc/self/status. */
export function effectiveCapabilities(status: string): bigint | undefined {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex === undefined ? undefined : BigInt(`0x${hex}`);
}

/** The capabilities `config` needs that `effective` lacks, in a fixed order. */
export function missingCapabilities(config: Config, effective: bigint, unprivilegedPortStart: number): CapabilityName[] {
  const needed: CapabilityName[] = ['CAP_NET_ADMIN', 'CAP_NET_RAW'];
  if (config.global.step2Port < unprivilegedPortStart) needed.push('CAP_NET_BIND_SERVICE');
  return needed.filter((name) => (effective & (1n << BigInt(NEEDED[name].bit))) === 0n);
}

/** The one line an operator reads: what is missing, what for, and the two ways to grant it. */
export function missingCapabilityMessage(missing: readonly CapabilityName[], user: string): string {
  const what = missing.map((name) => `${name} (${NEEDED[name].for})`).join(', ');
  return (
    `the daemon lacks ${what}: it runs as user ${user} without ${missing.length === 1 ? 'it' : 'them'}. ` +
    'Run it as root (with the full capability set), or give them to its user: under systemd AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE ' +
    '(as packaging/systemd/knock-port.service does), elsewhere setpriv --ambient-caps (see docs/manual/install.md, "The service user and its capabilities")'
  );
}

/** Throws MissingCapabilityError when this process cannot do what `config` asks of it. */
export function requireCapabilities(config: Config): void {
  const effective = effectiveCapabilities(readProc('/proc/self/status') ?? '');
  // No /proc to read: let the first privileged call say what it says.
  if (effective === undefined) return;
  const portStart = Number(readProc('/proc/sys/net/ipv4/ip_unprivileged_port_start') ?? '1024');
  const missing = missingCapabilities(config, effective, Number.isInteger(portStart) ? portStart : 1024);
  if (missing.length > 0) throw new MissingCapabilityError(missingCapabilityMessage(missing, processIdentity().user));
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
