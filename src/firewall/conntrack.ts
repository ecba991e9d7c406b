/**
 * Ends the flows of a revoked address. The gate accepts an established flow that carries the
 * grant mark, and a flow keeps its mark after its grant is gone, so removing a grant alone
 * leaves a live SSH or VPN session running. Deleting the address's conntrack entries makes its
 * next packet NEW, and a NEW packet needs the grant that is gone. DNAT rewrites only the reply tuple, so matching the
 * original destination port (the app's public port) covers local and forwarded apps alike.
 *
 * A local TCP server that sends after the entry is gone would re-create it from the output
 * path, with the client on the reply side, where `established` matches again: its sockets to
 * the address are destroyed too (`ss -K`, which also sends the client a RST). A local UDP
 * server that sends on its own can do the same, and no socket can be closed for it: only a
 * gate that accepts established packets in the original direction alone stops that.
 *
 * The same tools end an expired grant's flows (apps with `end_flows_on_expiry`), end the flows
 * a host firewall reload let in without a grant (the self-heal's purge), and keep the flows
 * already established when knock-port is first installed (adoption: the grant mark is set on
 * them, so the gate's "established needs the grant mark" keeps the operator's own SSH session).
 *
 * Tools run as child processes, never synchronously: a revoke must not stall the event loop.
 */
import { spawn } from 'node:child_process';
import { publicStep2Port, type AppConfig, type Config, type IpFamily, type Protocol } from '../config/types.js';
import { KnockPortError } from '../shared/errors.js';
import { canonicalIp } from '../shared/ip.js';
import { ALL_FAMILIES, familyOf } from './plan.js';

/** Flows from an address to one port: the original tuple's destination port and protocol. */
export interface FlowTarget {
  protocol: Protocol;
  port: number;
  /** Served by a socket on this host (a local app, HTTPS), not DNATed to a LAN host. */
  local: boolean;
}

/** What a revoke covers: the public HTTPS port and the configured apps. */
export interface FlowScope {
  step2Port: number;
  apps: readonly AppConfig[];
}

/** The protected ports, and the conntrack mark bit knock-port sets on the flows it admits (`global.grant_mark`). */
export interface MarkedFlowScope extends FlowScope {
  grantMark: number;
}

/** The running config's protected ports and grant mark. */
export function flowScopeOf(config: Pick<Config, 'global' | 'apps'>): MarkedFlowScope {
  return { step2Port: publicStep2Port(config.global), apps: config.apps, grantMark: config.global.grantMark };
}

/** One app's port for a service revoke; HTTPS and every app's port for a full revoke. */
export function revokedFlowTargets(scope: FlowScope, app?: AppConfig): FlowTarget[] {
  const toTarget = (a: AppConfig): FlowTarget => ({ protocol: a.protocol, port: a.port, local: a.destination.kind === 'local' });
  if (app) return [toTarget(app)];
  const targets: FlowTarget[] = [{ protocol: 'tcp', port: scope.step2Port, local: true }, ...scope.apps.map(toTarget)];
  const seen = new Set<string>();
  return targets.filter((t) => {
    const key = `${t.protocol}/${t.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function familyName(family: IpFamily): 'ipv4' | 'ipv6' {
  return family === 4 ? 'ipv4' : 'ipv6';
}

/** `conntrack` arguments that delete the address's tracked flows to the target's port. */
export function conntrackDeleteArgs(address: string, target: Pick<FlowTarget, 'protocol' | 'port'>): string[] {
  const family = familyOf(address);
  return ['--delete', '--family', familyName(family), '--orig-src', address, '--proto', target.protocol, '--orig-port-dst', String(target.port)];
}

/** `ss` arguments that destroy local TCP sockets on the port whose peer is the address. */
export function socketKillArgs(address: string, port: number): string[] {
  return ['--kill', '--no-header', '--tcp', '--numeric', 'dst', peerOf(address), 'sport', '=', `:${port}`];
}

function peerOf(address: string): string {
  return familyOf(address) === 6 ? `[${address}]` : address;
}

/** `ss` arguments that destroy the local TCP sockets on the port of these connections of the address only. */
export function socketKillTupleArgs(address: string, port: number, sourcePorts: readonly number[]): string[] {
  const peers = sourcePorts.flatMap((sourcePort, i) => [...(i > 0 ? ['or'] : []), 'dst', `${peerOf(address)}:${sourcePort}`]);
  return ['--kill', '--no-header', '--tcp', '--numeric', 'sport', '=', `:${port}`, 'and', '(', ...peers, ')'];
}

/** `--mark VALUE/MASK`: as a filter, matches when (mark & MASK) == VALUE; in an update, sets the MASK bits to VALUE. */
function markArgs(value: number, mask: number): string[] {
  return ['--mark', `0x${value.toString(16)}/0x${mask.toString(16)}`];
}

function targetArgs(family: IpFamily, target: Pick<FlowTarget, 'protocol' | 'port'>): string[] {
  return ['--family', familyName(family), '--proto', target.protocol, '--orig-port-dst', String(target.port)];
}

/** `conntrack` arguments that list the family's entries to the target's port without the grant mark. */
export function conntrackUnmarkedListArgs(family: IpFamily, target: Pick<FlowTarget, 'protocol' | 'port'>, grantMark: number): string[] {
  return ['--dump', ...targetArgs(family, target), ...markArgs(0, grantMark)];
}

/** `conntrack` arguments that delete the address's entries to the target's port without the grant mark. */
export function conntrackUnmarkedDeleteArgs(address: string, target: Pick<FlowTarget, 'protocol' | 'port'>, grantMark: number): string[] {
  return ['--delete', ...targetArgs(familyOf(address), target), '--orig-src', address, ...markArgs(0, grantMark)];
}

/** `ss` arguments that list the established TCP connections to a local port, both families. */
export function establishedSocketsArgs(port: number): string[] {
  return ['--no-header', '--tcp', '--numeric', 'state', 'established', 'sport', '=', `:${port}`];
}

/** An established TCP connection of a local socket, as the client opened it. */
export interface LocalConnection {
  client: string;
  clientPort: number;
  local: string;
  localPort: number;
}

/** `address:port` or `[address]:port` (`ss` output), the address canonical (IPv4-mapped becomes IPv4). */
function endpointOf(text: string): { address: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  const address = m ? canonicalIp(m[1]!.split('%')[0]!) : undefined;
  return m && address !== undefined ? { address, port: Number(m[2]) } : undefined;
}

/** The connections in `ss --no-header --tcp --numeric state established` output (Recv-Q Send-Q Local Peer). */
export function parseEstablishedSockets(text: string): LocalConnection[] {
  const connections: LocalConnection[] = [];
  for (const line of text.split('\n')) {
    const columns = line.trim().split(/\s+/);
    if (columns.length < 4) continue;
    const local = endpointOf(columns[2]!);
    const peer = endpointOf(columns[3]!);
    if (local && peer) connections.push({ client: peer.address, clientPort: peer.port, local: local.address, localPort: local.port });
  }
  return connections;
}

/** conntrack's own timeout for an established TCP flow (nf_conntrack_tcp_timeout_established). */
const ESTABLISHED_TIMEOUT_SECONDS = 432_000;

/**
 * `conntrack` arguments that create the entry of an established local connection. A host that
 * tracked nothing before knock-port's ruleset (no stateful firewall) has no entry for it, and its
 * next packet would be picked up mid-stream as a new flow without a grant. Exists already: refused.
 */
export function conntrackCreateArgs(connection: LocalConnection): string[] {
  return [
    '--create',
    '--proto',
    'tcp',
    '--orig-src',
    connection.client,
    '--orig-dst',
    connection.local,
    '--orig-port-src',
    String(connection.clientPort),
    '--orig-port-dst',
    String(connection.localPort),
    '--state',
    'ESTABLISHED',
    '--timeout',
    String(ESTABLISHED_TIMEOUT_SECONDS),
    '--status',
    'ASSURED,SEEN_REPLY',
  ];
}

/** `conntrack` arguments that set the grant mark on the family's established flows to the target's port. */
export function conntrackAdoptArgs(family: IpFamily, target: Pick<FlowTarget, 'protocol' | 'port'>, grantMark: number): string[] {
  // A TCP entry that is not established yet (a SYN in flight) is a new connection: it needs a grant.
  const state = target.protocol === 'tcp' ? ['--state', 'ESTABLISHED'] : [];
  return ['--update', ...targetArgs(family, target), ...state, ...markArgs(grantMark, grantMark)];
}

/** One tracked flow as `conntrack -L` shows it: the original direction's source. */
export interface TrackedFlow {
  source: string;
  sourcePort: number;
}

/** The original source of every complete line of `conntrack -L` output (the first `src=`, `sport=`). */
export function parseConntrackList(text: string): TrackedFlow[] {
  const flows: TrackedFlow[] = [];
  // A line cut by the output limit has no newline: it is left out.
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  for (const line of complete.split('\n')) {
    const m = /\bsrc=(\S+) dst=\S+ sport=(\d+) /.exec(line);
    const source = m ? canonicalIp(m[1]!) : undefined;
    if (m && source !== undefined) flows.push({ source, sourcePort: Number(m[2]) });
  }
  return flows;
}

/** The sources of `flows` whose flows are to end, each with the source ports of its flows. */
export function flowsBySource(flows: readonly TrackedFlow[], end: (source: string) => boolean): Map<string, number[]> {
  const bySource = new Map<string, number[]>();
  for (const { source, sourcePort } of flows) {
    if (!end(source)) continue;
    const ports = bySource.get(source) ?? [];
    bySource.set(source, ports);
    ports.push(sourcePort);
  }
  return bySource;
}

/** `conntrack -D` says how many entries it deleted; none is exit status 1, and not an error. */
const DELETED = /(\d+) flow entries have been deleted/;
/** `conntrack -U` likewise; an entry that already has the mark is not counted. */
const UPDATED = /(\d+) flow entries have been updated/;

export class FlowCloseError extends KnockPortError {}

/** A finished tool: exit status (null when killed), stdout and stderr. */
export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export type ToolRunner = (command: string, args: string[]) => Promise<ToolResult>;

export interface FlowCloser {
  /**
   * Ends the address's flows to every target; tries them all, then throws FlowCloseError
   * naming what failed. Resolves to the number of conntrack entries and sockets ended.
   */
  close(address: string, targets: readonly FlowTarget[]): Promise<number>;
}

/** After a re-install: the flows a host firewall reload let in without a grant. */
export interface UngrantedFlowEnder {
  /**
   * Ends the flows to the targets that do not carry the grant mark and whose source
   * `holdsGrant` denies; tries every target, then throws FlowCloseError naming what failed.
   * Resolves to the number of conntrack entries and sockets ended.
   */
  endUngranted(targets: readonly FlowTarget[], grantMark: number, holdsGrant: (source: string, target: FlowTarget) => boolean): Promise<number>;
}

/** On a first install: the flows already established to protected ports. */
export interface FlowAdopter {
  /** Sets the grant mark on them; resolves to the number of conntrack entries marked. */
  adopt(targets: readonly FlowTarget[], grantMark: number): Promise<number>;
}

const TOOL_TIMEOUT_MS = 10_000;
/** Enough stderr for the tool's own message; stdout only matters for `ss` (one line per socket). */
const OUTPUT_LIMIT = 64 * 1024;
/** A `conntrack -L` of one port: about 20,000 entries; a longer listing is cut there. */
const LISTING_LIMIT = 4 * 1024 * 1024;
/** Local connections one adoption creates entries for (each costs a `conntrack -I`). */
export const ADOPT_CONNECTION_LIMIT = 1024;
/** Sources one purge ends flows of (each costs a `conntrack -D`, and an `ss -K` for local TCP). */
export const PURGE_SOURCE_LIMIT = 1024;
/** Tool processes a purge runs at once. */
const PURGE_PARALLEL = 4;
/** Connections one `ss -K` names. */
const SOCKETS_PER_KILL = 64;

/**
 * Runs a tool behind `prefix` (e.g. `ip netns exec NS`) without blocking, keeping bounded
 * output. conntrack prints every entry it deletes on stdout: that output is discarded.
 */
export function spawnTool(prefix: readonly string[] = [], timeoutMs = TOOL_TIMEOUT_MS): ToolRunner {
  return (command, args) =>
    new Promise((resolve, reject) => {
      const [file, ...fileArgs] = [...prefix, command, ...args] as [string, ...string[]];
      const listing = command === 'conntrack' && args[0] === '--dump';
      const keepStdout = command !== 'conntrack' || listing;
      const stdoutLimit = listing ? LISTING_LIMIT : OUTPUT_LIMIT;
      const child = spawn(file, fileArgs, { stdio: ['ignore', keepStdout ? 'pipe' : 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        if (stdout.length < stdoutLimit) stdout += chunk.toString();
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        if (stderr.length < OUTPUT_LIMIT) stderr += chunk.toString();
      });
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') reject(new FlowCloseError(`'${file}' not found: install it (see packaging/debian-packages.txt)`, { cause: err }));
        else reject(new FlowCloseError(`${command} could not be run: ${err.message}`, { cause: err }));
      });
      child.once('close', (code, signal) => {
        if (signal === 'SIGKILL') stderr += `killed after ${timeoutMs / 1000} s`;
        resolve({ code, stdout, stderr: stderr.trim() });
      });
    });
}

/** Deletes conntrack entries with the `conntrack` tool and local TCP sockets with `ss -K`; marks adopted ones. */
export class ConntrackFlowCloser implements FlowCloser, UngrantedFlowEnder, FlowAdopter {
  constructor(private readonly run: ToolRunner = spawnTool()) {}

  async close(address: string, targets: readonly FlowTarget[]): Promise<number> {
    // Ports in parallel: on a large conntrack table each deletion walks it, and the operator waits.
    const results = await Promise.all(targets.map((target) => this.closeOne(address, target)));
    const failures = results.flatMap((r) => r.failures);
    if (failures.length > 0) {
      throw new FlowCloseError(`established flows of ${address} may still be open: ${failures.join('; ')}`);
    }
    return results.reduce((sum, r) => sum + r.closed, 0);
  }

  private async closeOne(address: string, target: FlowTarget): Promise<{ closed: number; failures: string[] }> {
    const what = `${target.protocol}/${target.port}`;
    let closed = 0;
    const failures: string[] = [];
    // Sockets first: their RST leaves while the entry exists, so rules dropping untracked packets pass it.
    if (target.local && target.protocol === 'tcp') {
      try {
        closed += await this.killSockets(address, target.port);
      } catch (err) {
        failures.push(`${what} sockets: ${(err as Error).message}`);
      }
    }
    try {
      closed += await this.deleteEntries(address, target);
    } catch (err) {
      failures.push(`${what} conntrack: ${(err as Error).message}`);
    }
    return { closed, failures };
  }

  private async deleteEntries(address: string, target: FlowTarget): Promise<number> {
    return this.conntrackCount(conntrackDeleteArgs(address, target), DELETED);
  }

  private async killSockets(address: string, port: number): Promise<number> {
    return this.ssKill(socketKillArgs(address, port));
  }

  private async ssKill(args: string[]): Promise<number> {
    const result = await this.run('ss', args);
    // ss reports a refused SOCK_DESTROY on stderr and still exits 0. A kernel without
    // CONFIG_INET_DIAG_DESTROY refuses silently: the conntrack deletion still applies.
    if (result.code !== 0 || result.stderr !== '') throw new FlowCloseError(result.stderr || `ss exited with status ${String(result.code)}`);
    return result.stdout.split('\n').filter((line) => line.trim() !== '').length;
  }

  /** Runs a `conntrack -D` or `-U` and reads how many entries it changed; none (status 1) is no error. */
  private async conntrackCount(args: string[], said: RegExp): Promise<number> {
    const result = await this.run('conntrack', args);
    const count = said.exec(result.stderr);
    if (result.code === 0 || (result.code === 1 && count?.[1] === '0')) return Number(count?.[1] ?? 0);
    throw new FlowCloseError(result.stderr || `conntrack exited with status ${String(result.code)}`);
  }

  /**
   * Lists the entries without the grant mark per port and family, then ends those of each
   * source without a grant: its sockets on a local TCP port (only those connections: the same
   * source may keep a flow that was granted and outlives its grant), then its unmarked entries.
   * At most PURGE_SOURCE_LIMIT sources; past that the gate still drops their packets.
   */
  async endUngranted(targets: readonly FlowTarget[], grantMark: number, holdsGrant: (source: string, target: FlowTarget) => boolean): Promise<number> {
    const failures: string[] = [];
    const work: Array<() => Promise<number>> = [];
    for (const target of targets) {
      for (const family of ALL_FAMILIES) {
        let listed: TrackedFlow[];
        try {
          listed = parseConntrackList(await this.listOutput(conntrackUnmarkedListArgs(family, target, grantMark)));
        } catch (err) {
          failures.push(`${target.protocol}/${target.port} IPv${family} listing: ${(err as Error).message}`);
          continue;
        }
        for (const [source, ports] of flowsBySource(listed, (source) => !holdsGrant(source, target))) {
          if (work.length < PURGE_SOURCE_LIMIT) work.push(() => this.endSourceFlows(source, ports, target, grantMark, failures));
        }
      }
    }
    const ended = await inBatches(work, PURGE_PARALLEL);
    if (failures.length > 0) throw new FlowCloseError(`flows without a grant may still be open: ${failures.join('; ')}`);
    return ended;
  }

  private async listOutput(args: string[]): Promise<string> {
    const result = await this.run('conntrack', args);
    if (result.code !== 0) throw new FlowCloseError(result.stderr || `conntrack exited with status ${String(result.code)}`);
    return result.stdout;
  }

  private async endSourceFlows(source: string, sourcePorts: readonly number[], target: FlowTarget, grantMark: number, failures: string[]): Promise<number> {
    const what = `${target.protocol}/${target.port} from ${source}`;
    let ended = 0;
    if (target.local && target.protocol === 'tcp') {
      for (let i = 0; i < sourcePorts.length; i += SOCKETS_PER_KILL) {
        try {
          ended += await this.ssKill(socketKillTupleArgs(source, target.port, sourcePorts.slice(i, i + SOCKETS_PER_KILL)));
        } catch (err) {
          failures.push(`${what} sockets: ${(err as Error).message}`);
        }
      }
    }
    try {
      ended += await this.conntrackCount(conntrackUnmarkedDeleteArgs(source, target, grantMark), DELETED);
    } catch (err) {
      failures.push(`${what} conntrack: ${(err as Error).message}`);
    }
    return ended;
  }

  /**
   * Every target and family: entries for the established connections of local TCP ports that
   * have none (at most ADOPT_CONNECTION_LIMIT), then the grant mark on the established entries.
   * Tries them all, then throws FlowCloseError naming what failed.
   */
  async adopt(targets: readonly FlowTarget[], grantMark: number): Promise<number> {
    const failures: string[] = [];
    let created = 0;
    for (const target of targets) {
      if (!target.local || target.protocol !== 'tcp') continue;
      let connections: LocalConnection[];
      try {
        connections = parseEstablishedSockets(await this.listSockets(target.port));
      } catch (err) {
        failures.push(`${target.protocol}/${target.port} connections: ${(err as Error).message}`);
        continue;
      }
      for (const connection of connections.slice(0, Math.max(0, ADOPT_CONNECTION_LIMIT - created))) {
        created++;
        try {
          await this.createEntry(connection);
        } catch (err) {
          failures.push(`${target.protocol}/${target.port} from ${connection.client}:${connection.clientPort}: ${(err as Error).message}`);
        }
      }
    }
    let marked = 0;
    for (const target of targets) {
      for (const family of ALL_FAMILIES) {
        try {
          marked += await this.conntrackCount(conntrackAdoptArgs(family, target, grantMark), UPDATED);
        } catch (err) {
          failures.push(`${target.protocol}/${target.port} IPv${family}: ${(err as Error).message}`);
        }
      }
    }
    if (failures.length > 0) throw new FlowCloseError(`established flows could not all be kept: ${failures.join('; ')}`);
    return marked;
  }

  private async listSockets(port: number): Promise<string> {
    const result = await this.run('ss', establishedSocketsArgs(port));
    if (result.code !== 0) throw new FlowCloseError(result.stderr || `ss exited with status ${String(result.code)}`);
    return result.stdout;
  }

  /** An entry that exists already (the host tracked the connection) is fine: the mark step finds it. */
  private async createEntry(connection: LocalConnection): Promise<void> {
    const result = await this.run('conntrack', conntrackCreateArgs(connection));
    // "File exists", or conntrack's own "Such conntrack exists, try -U to update".
    if (result.code === 0 || /exists/.test(result.stderr)) return;
    throw new FlowCloseError(result.stderr || `conntrack exited with status ${String(result.code)}`);
  }
}

/** Runs the jobs, `parallel` at a time; resolves to the sum of their results. */
async function inBatches(jobs: ReadonlyArray<() => Promise<number>>, parallel: number): Promise<number> {
  let next = 0;
  let sum = 0;
  const lane = async (): Promise<void> => {
    while (next < jobs.length) {
      const done = await jobs[next++]!();
      sum += done; // not `sum += await`: that reads sum before the other lanes add theirs
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, lane));
  return sum;
}
