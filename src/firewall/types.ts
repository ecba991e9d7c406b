/**
 * Two contracts: FirewallBackend, what the daemon and the CLI use (install, grants, revoke, list,
 * self-heal, uninstall), built once for every firewall in firewall.ts; and FirewallDriver, the
 * little each firewall (nftables/, iptables/) supplies for it. Also the grant and capability
 * shapes they report.
 */
import type { AppConfig, FirewallType, IpFamily, Protocol } from '../config/types.js';
import type { CaptureKind, GrantKind } from '../shared/kinds.js';
import type { GrantSetDriver } from './grant-sets.js';
import type { HostFirewallReport } from './host-firewall.js';
import type { FirewallPlan } from './plan.js';
import type { WouldDropCount } from './report-mode.js';

/** A live grant as read back from the kernel. */
export interface Grant {
  kind: GrantKind;
  family: IpFamily;
  address: string;
  /** Service grants: the app (port/protocol) it opens. */
  app?: string;
  protocol?: Protocol;
  port?: number;
  /** Seconds until the kernel removes it. */
  expiresInSeconds: number;
}

/** Whether knock-port's own table is owned by the daemon (kernel 6.9+), as one line for the operator. */
export interface TableOwnershipReport {
  owned: boolean;
  summary: string;
}

export interface FirewallCapabilities {
  nfqueue: boolean;
  nflog: boolean;
  /** Why a capture kind is unavailable, for the log and `knock-port check`. */
  notes: string[];
}

/**
 * One firewall backend (nftables, iptables + ipset, VyOS). Every rule knock-port needs
 * is made by a backend, and nowhere else. Grants are set elements with kernel-side
 * timeouts; the daemon's own timers are bookkeeping only.
 */
export interface FirewallBackend {
  readonly type: FirewallType;
  /** Can this kernel/backend queue (NFQUEUE) or log (NFLOG) step-1 packets? */
  capabilities(): Promise<FirewallCapabilities>;
  /** Exactly what install() applies, as text (`knock-port rules`). */
  render(capture: CaptureKind): string;
  /** Installs the base ruleset atomically; idempotent; keeps live grants. */
  install(capture: CaptureKind): Promise<void>;
  /** Opens the HTTPS port for `ip` for `ttlSeconds` (refreshes a live grant). */
  grantStep2(ip: string, ttlSeconds: number): Promise<void>;
  /** Opens the app's service port (or forward) for `ip` for `ttlSeconds` (refreshes). */
  grantService(ip: string, app: AppConfig, ttlSeconds: number): Promise<void>;
  /** Removes grants for `ip`: every grant, or only the app's service grant. */
  revoke(ip: string, app?: AppConfig): Promise<void>;
  /** Live grants read from the kernel. */
  list(): Promise<Grant[]>;
  /**
   * The host's own chains that could drop granted connections, what the last install or
   * self-heal inserted there and what still needs the operator (see host-firewall.ts).
   */
  hostFirewall(): HostFirewallReport;
  /**
   * Report mode (`gate_mode: report`): the packets the gate let pass that it would have dropped,
   * per app protocol and port, read from the kernel's rule counters now; empty in enforce mode.
   */
  wouldDrop(): Promise<WouldDropCount[]>;
  /** Removes everything install() made (its rules in host chains included), and nothing else. */
  uninstall(): Promise<void>;
  /**
   * Self-heal: re-installs the base ruleset if something removed it (a flush, a host
   * firewall reload); true when it did, so the caller re-applies live grants. Also puts
   * knock-port's accept rule back into host chains that lost it. Call every few seconds.
   */
  ensureInstalled?(capture?: CaptureKind): Promise<boolean>;
  /** nft backends: whether the last install left knock-port's table owned by the daemon, and why not. */
  tableOwnership?(): TableOwnershipReport | undefined;
  /**
   * Whether the base ruleset is in place now. Read at start before install(): absent means a
   * first install (not a restart), whose already established flows are kept (adoption).
   */
  isInstalled?(): Promise<boolean>;
  /**
   * Releases long-lived helpers (the iptables backend's ipset session) once the grants already
   * asked for have landed; the rules stay. Called when a reload replaces the backend, and on stop.
   */
  close?(): void;
}

/**
 * One firewall (nftables, VyOS, iptables + ipset): the rules it installs, inspects and removes,
 * and how it writes grant sets. Grant bookkeeping, self-heal and the host firewall's chains are
 * the same for every firewall (firewall.ts); a new firewall is a folder beside nftables/ and
 * iptables/ that implements this, and one case in index.ts.
 */
export interface FirewallDriver {
  readonly type: FirewallType;
  readonly plan: FirewallPlan;
  /** Writes and reads the grant sets, behind the batching queue (grant-sets.ts). */
  readonly grantSets: GrantSetDriver;
  /** Most grant changes in one kernel transaction (see GrantSetsOptions.maxBatch). */
  readonly maxGrantBatch: number;
  capabilities(): Promise<FirewallCapabilities>;
  /** Exactly what install() applies, as text. */
  describe(capture: CaptureKind): string;
  /** Installs the base ruleset atomically; idempotent; keeps live grants. */
  install(capture: CaptureKind): Promise<void>;
  /** Whether the base ruleset is in place now (self-heal, and first install or restart). */
  isInstalled(): Promise<boolean>;
  /** Before each self-heal check: takes hold again of what a restart or a flush let go (nft: its table's owner). */
  reclaim?(): Promise<void>;
  /** Report mode's counting rules now: each rule's comment and packet counter. */
  ruleCounters(): Promise<Array<{ comment: string; packets: number }>>;
  /** Removes the base ruleset and the grant sets, and nothing else; tolerates a partial install. */
  uninstall(): Promise<void>;
  /** nft: whether the last install left knock-port's table owned by the daemon, and why not. */
  tableOwnership?(): TableOwnershipReport | undefined;
}
