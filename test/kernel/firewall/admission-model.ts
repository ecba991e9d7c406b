/**
 * What a client should be able to reach through a knock-port gateway, computed from the grants
 * it holds and the host's own firewall, as docs and the grant-mark design say. Pure: the kernel
 * test (admission.test.ts) asks it for every probe it sends and compares with what the client saw.
 *
 * - knock-port protects the HTTPS port (open to a source with a live step-2 window), each app's
 *   public port (open to a source with a live grant for that app; a forwarded app's public port
 *   is DNAT-ed to its LAN target) and a forwarded app's LAN target (never reachable from outside
 *   except through the DNAT). Everything else (other ports of the gateway, other LAN hosts and
 *   ports, even the same port as a local app on a LAN host) is not knock-port's: the host's own
 *   firewall decides, and knock-port's accept rule in host chains never opens it.
 * - A connection knock-port admits carries the grant mark, which the host firewall's accept
 *   rule (put there by knock-port) lets through, whatever the host's policy.
 * - An established flow passes knock-port's gate only while it is granted, so a flow opened
 *   while the rules were gone (a host `flush ruleset`) is judged like a new one once the
 *   self-heal is done; the host's own `ct state established accept` keeps passing the flows
 *   that are not knock-port's.
 * - Grants are made by knocks while the daemon runs, removed by a revoke, and expire in the
 *   kernel on time whether the daemon runs or not (SIGTERM and kill -9 leave the rules).
 */

export type Protocol = 'tcp' | 'udp';

/** The host's own firewall around knock-port. */
export type HostFirewallKind = 'none' | 'nftables-drop' | 'iptables-drop' | 'ufw' | 'vyos-accept' | 'vyos-drop';

export const HOST_FIREWALL_KINDS: readonly HostFirewallKind[] = ['none', 'nftables-drop', 'iptables-drop', 'ufw', 'vyos-accept', 'vyos-drop'];

export type DestinationKind = 'local-service' | 'lan-same-port' | 'dnat-public' | 'dnat-target' | 'https' | 'unprotected';

export interface Destination {
  kind: DestinationKind;
  protocol: Protocol;
  /** The app whose grant opens it (`local-service`, `dnat-public`). */
  app?: string;
  /**
   * No server there (a LAN host at a forwarded app's public port, its target port being another):
   * a connection completes only if the gateway redirects it, which only a flow addressed to the
   * gateway itself may be.
   */
  nothingListens?: boolean;
}

export type Expectation = 'admitted' | 'refused' | 'uncertain';

/** Three-valued: a grant whose expiry is too close to the probe's time is `uncertain`. */
type Tri = 'yes' | 'no' | 'uncertain';

/** When something happened, known within the time it took to see it happen (ms since the epoch). */
export interface Moment {
  earliest: number;
  latest: number;
}

interface Grant {
  /** Expiry bounds (ms): the knock's moment plus the grant's duration. */
  earliest: number;
  latest: number;
}

/** True when the host firewall lets in a new connection that knock-port did not mark. */
export function hostAdmitsUnmarked(host: HostFirewallKind): boolean {
  return host === 'none' || host === 'vyos-accept';
}

/** The destinations whose admission knock-port decides. */
export function isProtected(kind: DestinationKind): boolean {
  return kind !== 'lan-same-port' && kind !== 'unprotected';
}

/** Every grant the knocks made, as the daemon and the kernel hold them. */
export class GrantBook {
  private readonly windows = new Map<string, Grant>();
  private readonly services = new Map<string, Map<string, Grant>>();

  /**
   * A valid step-1 knock: a step-2 window for `source`, replacing any earlier one (the kernel
   * set's element gets the new timeout). A knock while the daemon is down is seen by nobody.
   */
  step1(source: string, at: Moment, windowSeconds: number, daemonUp: boolean): void {
    if (!daemonUp) return;
    this.windows.set(source, expiring(at, windowSeconds));
  }

  /** A valid step 2 for `app` (answered 200): the app's grant for `source`. */
  step2(source: string, app: string, at: Moment, durationSeconds: number): void {
    const apps = this.services.get(source) ?? new Map<string, Grant>();
    apps.set(app, expiring(at, durationSeconds));
    this.services.set(source, apps);
  }

  /** `knock-port revoke SOURCE`: every grant of the address, its step-2 window included. */
  revoke(source: string): void {
    this.windows.delete(source);
    this.services.delete(source);
  }

  /** Whether `source` holds a step-2 window at `now`; `uncertain` within `marginMs` of its expiry. */
  window(source: string, now: number, marginMs: number): Tri {
    return liveness(this.windows.get(source), now, marginMs);
  }

  /** Whether `source` holds a grant for `app` at `now`; `uncertain` within `marginMs` of its expiry. */
  service(source: string, app: string, now: number, marginMs: number): Tri {
    return liveness(this.services.get(source)?.get(app), now, marginMs);
  }

  /** The latest moment any grant can still be live (ms), or undefined with no grant at all. */
  lastExpiry(): number | undefined {
    const all = [...this.windows.values(), ...[...this.services.values()].flatMap((apps) => [...apps.values()])];
    return all.length === 0 ? undefined : Math.max(...all.map((g) => g.latest));
  }
}

function expiring(at: Moment, seconds: number): Grant {
  return { earliest: at.earliest + seconds * 1000, latest: at.latest + seconds * 1000 };
}

function liveness(grant: Grant | undefined, now: number, marginMs: number): Tri {
  if (!grant || now > grant.latest + marginMs) return 'no';
  return now < grant.earliest - marginMs ? 'yes' : 'uncertain';
}

/** What the probe's moment says about the flow. */
export interface ProbeContext {
  book: GrantBook;
  source: string;
  host: HostFirewallKind;
  /** The daemon runs: its HTTPS listener answers (the firewall admits with or without it). */
  daemonUp: boolean;
  now: number;
  marginMs: number;
}

/** Whether the source holds what opens a protected destination. */
function granted(dest: Destination, ctx: ProbeContext): Tri {
  const { book, source, now, marginMs } = ctx;
  switch (dest.kind) {
    case 'https':
      return book.window(source, now, marginMs);
    case 'local-service':
    case 'dnat-public':
      if (dest.app === undefined) throw new Error(`a ${dest.kind} destination names its app`);
      return book.service(source, dest.app, now, marginMs);
    default:
      // The DNAT target from outside: only ever reached through the DNAT of the public port.
      return 'no';
  }
}

function fromTri(value: Tri): Expectation {
  return value === 'yes' ? 'admitted' : value === 'no' ? 'refused' : 'uncertain';
}

/** Something listens there: the test's listeners, and the daemon's HTTPS while it runs. */
function listening(dest: Destination, ctx: ProbeContext): boolean {
  if (dest.nothingListens) return false;
  return dest.kind !== 'https' || ctx.daemonUp;
}

/**
 * A new connection (TCP handshake completes, or a UDP datagram is echoed) from the source to the
 * destination. Granted: knock-port's gate admits and its mark passes the host firewall. Not
 * knock-port's: the host firewall decides on an unmarked connection.
 */
export function expectNewFlow(dest: Destination, ctx: ProbeContext): Expectation {
  if (!listening(dest, ctx)) return 'refused';
  if (!isProtected(dest.kind)) return hostAdmitsUnmarked(ctx.host) ? 'admitted' : 'refused';
  return fromTri(granted(dest, ctx));
}

/**
 * A flow to a protected destination that was opened while the rules were gone (a host `flush
 * ruleset`), after the self-heal: it passes only while granted, like a new one. Flows to other
 * destinations are the host's: whether its `ct state established accept` still knows them
 * depends on whether conntrack ran during the gap (it does not in a namespace left with no
 * rules at all), so they are not judged.
 */
export function expectGapFlow(dest: Destination, ctx: ProbeContext): Expectation {
  if (!isProtected(dest.kind)) throw new Error(`a ${dest.kind} flow is the host firewall's, not judged after a gap`);
  if (dest.nothingListens) return 'refused';
  return fromTri(granted(dest, ctx));
}
