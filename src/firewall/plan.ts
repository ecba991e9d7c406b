/**
 * What every backend protects, derived once from the config: the step-1 and HTTPS
 * ports, the local and forwarded apps, and which address families can hold grants.
 * Pure: no I/O, shared by the nftables, iptables and VyOS rule generators.
 */
import { isIP } from 'node:net';
import { cpus } from 'node:os';
import { resolveStep1Workers } from '../config/workers.js';
import { prefilterPrefix } from '../step1/prefilter.js';
import { publicStep2Port, type AppConfig, type Config, type GateMode, type IpFamily, type Protocol } from '../config/types.js';
import { KnockPortError } from '../shared/errors.js';
import { interfacePattern } from '../config/interface-name.js';

export class InvalidGrantError extends KnockPortError {}

export interface ForwardedApp {
  app: AppConfig;
  address: string;
  family: IpFamily;
  port: number;
}

export interface FirewallPlan {
  step1Port: number;
  /** The step-2 port clients reach: gated by the step-2 grant set. */
  step2Port: number;
  /**
   * knock-port's own step-2 listener when a reverse proxy serves `step2Port`: never reachable
   * from the external interface (the proxy connects over loopback or an internal interface).
   */
  internalStep2Port?: number;
  interfaceExt: string;
  /** Families whose addresses can be granted; traffic of the others is only ever dropped. */
  grantFamilies: IpFamily[];
  localApps: AppConfig[];
  forwardedApps: ForwardedApp[];
  packetMark: number;
  /** Conntrack mark bits on connections knock-port lets in (for the host's own ruleset). */
  grantMark: number;
  /** Step-1 SYNs and data segments per second passed to the daemon, all sources together. */
  step1RatePerSecond: number;
  queueNum: number;
  nflogGroup: number;
  /** Step-1 workers, resolved: queues queueNum..queueNum+N-1 or log groups nflogGroup..+N-1. */
  step1Workers: number;
  /** CPU ids 0..cpuCount-1 are spread over the NFLOG groups (NFLOG has no fanout of its own). */
  cpuCount: number;
  /** With `none`, a SYN carrying data is a knock and goes through the prefilter. */
  step1Handshake: 'cookie' | 'none';
  /**
   * The bytes a step-1 data segment's payload must start with to reach the daemon
   * (src/step1/prefilter.ts); undefined when there is no prefilter (`step1_reply: reset`).
   */
  step1Prefilter?: Buffer;
  /**
   * `report`: every rule that would drop a packet to an app's port counts it (per protocol and
   * port), logs it rate-limited and lets it pass; step 1 and the HTTPS port work as in `enforce`.
   */
  gateMode: GateMode;
}

/** The machine the rules are made for; tests pass explicit numbers so goldens never depend on it. */
export interface PlanMachine {
  /** Cores `step1_workers: auto` counts (default: what the daemon's workers resolve against). */
  cores?: number;
  /** CPU ids to spread NFLOG over (default: this machine's CPUs). */
  cpus?: number;
}

export const ALL_FAMILIES: readonly IpFamily[] = [4, 6];

export function planFirewall(config: Config, machine: PlanMachine = {}): FirewallPlan {
  const g = config.global;
  const forwardedApps: ForwardedApp[] = [];
  for (const app of config.apps) {
    if (app.destination.kind === 'forward') {
      const { address, family, port } = app.destination;
      forwardedApps.push({ app, address, family, port });
    }
  }
  return {
    step1Port: g.step1Port,
    step2Port: publicStep2Port(g),
    ...(publicStep2Port(g) !== g.step2Port ? { internalStep2Port: g.step2Port } : {}),
    interfaceExt: g.interfaceExt,
    grantFamilies: g.ipv6 ? [4, 6] : [4],
    localApps: config.apps.filter((a) => a.destination.kind === 'local'),
    forwardedApps,
    packetMark: g.packetMark,
    grantMark: g.grantMark,
    step1RatePerSecond: g.step1RatePerSecond,
    queueNum: g.queueNum,
    nflogGroup: g.nflogGroup,
    // The same resolution the daemon's workers use, so every queue the rules name has a reader.
    step1Workers: resolveStep1Workers(g.step1Workers, machine.cores),
    cpuCount: Math.max(1, machine.cpus ?? cpus().length),
    step1Handshake: g.step1Handshake,
    // With `step1_reply: reset` every data segment must get the daemon's RST alike: a kernel drop
    // (or the kernel's own RST, whose flags differ) would tell a right path from a wrong one.
    ...(g.step1Reply === 'reset' ? {} : { step1Prefilter: prefilterPrefix(g.step1Path) }),
    gateMode: g.gateMode ?? 'enforce',
  };
}

/** The family of a literal address, or an operator-facing error. */
export function familyOf(ip: string): IpFamily {
  const version = isIP(ip);
  if (version === 4 || version === 6) return version;
  throw new InvalidGrantError(`'${ip}' is not an IPv4 or IPv6 address`);
}

/** Checks that `ip` can be granted under this plan and returns its family. */
export function grantableFamily(plan: FirewallPlan, ip: string): IpFamily {
  const family = familyOf(ip);
  if (!plan.grantFamilies.includes(family)) {
    throw new InvalidGrantError(`cannot grant IPv6 address ${ip}: global.ipv6 is off`);
  }
  return family;
}

/** Checks that a service grant for `app` from an `ip` of this family can reach it. */
export function checkServiceGrant(ip: string, family: IpFamily, app: AppConfig): void {
  if (app.destination.kind === 'forward' && app.destination.family !== family) {
    throw new InvalidGrantError(`app '${app.name}' forwards to an IPv${app.destination.family} host: a grant for ${ip} could never reach it`);
  }
}

/** The app whose public port and protocol a kernel set element names. */
export function appForPort(apps: AppConfig[], protocol: Protocol, port: number): AppConfig | undefined {
  return apps.find((a) => a.protocol === protocol && a.port === port);
}

/** The app's always-allowed networks of one family (`always_allow`): they reach it without a knock. */
export function allowedNetworks(app: AppConfig, family: IpFamily): string[] {
  return app.alwaysAllow.filter((network) => (family === 6) === network.includes(':'));
}

/** `addr:port`, with IPv6 in brackets (DNAT targets). */
export function hostPort(address: string, family: IpFamily, port: number): string {
  return family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** An interface name is matched unless it stands for every interface (empty, `any`). */
export function matchesInterface(name: string): boolean {
  return interfacePattern(name).kind !== 'any';
}

/** Names the rules that count what the step-1 prefilter drops (both rulesets). */
export const PREFILTER_COMMENT = 'knock-port step-1 prefilter';
