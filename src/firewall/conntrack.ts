/**
 * Ends the flows of a revoked address. Every gate accepts `ct state established,related`
 * before it looks at the grant sets, so removing a grant alone leaves a live SSH or VPN
 * session running. Deleting the address's conntrack entries makes its next packet NEW, and a
 * NEW packet needs the grant that is gone. DNAT rewrites only the reply tuple, so matching the
 * original destination port (the app's public port) covers local and forwarded apps alike.
 *
 * A local TCP server that sends after the entry is gone would re-create it from the output
 * path, with the client on the reply side, where `established` matches again: its sockets to
 * the address are destroyed too (`ss -K`, which also sends the client a RST). A local UDP
 * server that sends on its own can do the same, and no socket can be closed for it: only a
 * gate that accepts established packets in the original direction alone stops that.
 *
 * Tools run as child processes, never synchronously: a revoke must not stall the event loop.
 */
import { spawn } from 'node:child_process';
import type { AppConfig, IpFamily, Protocol } from '../config/types.js';
import { KnockPortError } from '../shared/errors.js';
import { familyOf } from './plan.js';

/** Flows from an address to one port: the original tuple's destination port and protocol. */
export interface FlowTarget {
  protocol: Protocol;
  port: number;
  /** Served by a socket on this host (a local app, HTTPS), not DNATed to a LAN host. */
  local: boolean;
}

/** What a revoke covers: the public HTTPS port and the configured apps. */
export interface FlowScope {
  httpsPort: number;
  apps: readonly AppConfig[];
}

/** One app's port for a service revoke; HTTPS and every app's port for a full revoke. */
export function revokedFlowTargets(scope: FlowScope, app?: AppConfig): FlowTarget[] {
  const toTarget = (a: AppConfig): FlowTarget => ({ protocol: a.protocol, port: a.port, local: a.destination.kind === 'local' });
  if (app) return [toTarget(app)];
  const targets: FlowTarget[] = [{ protocol: 'tcp', port: scope.httpsPort, local: true }, ...scope.apps.map(toTarget)];
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
  const peer = familyOf(address) === 6 ? `[${address}]` : address;
  return ['--kill', '--no-header', '--tcp', '--numeric', 'dst', peer, 'sport', '=', `:${port}`];
}

/** `conntrack -D` says how many entries it deleted; none is exit status 1, and not an error. */
const DELETED = /(\d+) flow entries have been deleted/;

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

const TOOL_TIMEOUT_MS = 10_000;
/** Enough stderr for the tool's own message; stdout only matters for `ss` (one line per socket). */
const OUTPUT_LIMIT = 64 * 1024;

/**
 * Runs a tool behind `prefix` (e.g. `ip netns exec NS`) without blocking, keeping bounded
 * output. conntrack prints every entry it deletes on stdout: that output is discarded.
 */
export function spawnTool(prefix: readonly string[] = [], timeoutMs = TOOL_TIMEOUT_MS): ToolRunner {
  return (command, args) =>
    new Promise((resolve, reject) => {
      const [file, ...fileArgs] = [...prefix, command, ...args] as [string, ...string[]];
      const keepStdout = command !== 'conntrack';
      const child = spawn(file, fileArgs, { stdio: ['ignore', keepStdout ? 'pipe' : 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        if (stdout.length < OUTPUT_LIMIT) stdout += chunk.toString();
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

/** Deletes conntrack entries with the `conntrack` tool and local TCP sockets with `ss -K`. */
export class ConntrackFlowCloser implements FlowCloser {
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
    const result = await this.run('conntrack', conntrackDeleteArgs(address, target));
    const deleted = DELETED.exec(result.stderr);
    if (result.code === 0 || (result.code === 1 && deleted?.[1] === '0')) return Number(deleted?.[1] ?? 0);
    throw new FlowCloseError(result.stderr || `conntrack exited with status ${String(result.code)}`);
  }

  private async killSockets(address: string, port: number): Promise<number> {
    const result = await this.run('ss', socketKillArgs(address, port));
    // ss reports a refused SOCK_DESTROY on stderr and still exits 0. A kernel without
    // CONFIG_INET_DIAG_DESTROY refuses silently: the conntrack deletion still applies.
    if (result.code !== 0 || result.stderr !== '') throw new FlowCloseError(result.stderr || `ss exited with status ${String(result.code)}`);
    return result.stdout.split('\n').filter((line) => line.trim() !== '').length;
  }
}
