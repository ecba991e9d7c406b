/**
 * A small network for end-to-end tests: a gateway namespace running the real daemon,
 * a client namespace on its "WAN" side and a LAN host behind it, IPv4 and IPv6.
 * Addresses are documentation ranges, only ever inside these namespaces. The network and
 * the daemon process are the same as `knock-port demo` builds.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CLI_SCRIPT, spawnDaemon, type DaemonProcess } from '../../src/demo/daemon-process.js';
import { ADDR, IF, createSelfSignedCert, createTopology } from '../../src/demo/topology.js';
import type { Netns } from './netns.js';

export { ADDR, IF } from '../../src/demo/topology.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const CLI = CLI_SCRIPT;

export interface Sandbox {
  gw: Netns;
  client: Netns;
  lan: Netns;
  dir: string;
  cert: string;
  key: string;
  destroy(): void;
}

/** Builds the three namespaces, routes, forwarding and a throwaway TLS certificate. */
export function createSandbox(prefix: string): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), `kp-${prefix}-`));
  let topology: ReturnType<typeof createTopology> | undefined;
  try {
    topology = createTopology({ gateway: `${prefix}g`, client: `${prefix}c`, lan: `${prefix}l` });
    // The gateway's WAN addresses as subject alternative names: clients can verify it with --ca / --cacert.
    const { cert, key } = createSelfSignedCert(dir, 'knock-port.test', [ADDR.gwWan4, ADDR.gwWan6]);
    const { gw, client, lan } = topology;
    const built = topology;
    return {
      gw,
      client,
      lan,
      dir,
      cert,
      key,
      destroy() {
        built.destroy();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    topology?.destroy();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The `global:` section of a test config: the sandbox's interfaces, state directory and
 * control socket, a rate limit no test trips by accident, per-source budgets per IPv6 address
 * (not per /64), then `settings` (which may override any of them; undefined values are left out).
 */
export function globalSection(sandbox: Sandbox, settings: Record<string, string | number | undefined>): string {
  const entries = {
    interface_ext: IF.gwWan,
    interface_int: IF.gwLan,
    step1_2_rate_limit_per_minute: 100,
    // Tests take many client addresses from one /64 and count on separate budgets for each.
    source_prefix_v6: 128,
    state_dir: join(sandbox.dir, 'state'),
    control_socket: join(sandbox.dir, 'control.sock'),
    ...settings,
  };
  const lines = Object.entries(entries)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `  ${key}: ${value}\n`);
  return `global:\n${lines.join('')}`;
}

export function writeFile(sandbox: Sandbox, name: string, text: string): string {
  const path = join(sandbox.dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

export type Daemon = DaemonProcess;

/** Starts `knock-port run` inside the gateway namespace. */
export function startDaemon(sandbox: Sandbox, args: string[]): Daemon {
  return spawnDaemon(sandbox.gw, args);
}

/** curl from a namespace; returns the HTTP status ("000" when nothing answered) and body. */
export function curl(ns: Netns, args: string[], timeoutSeconds = 2): { status: string; body: string } {
  const r = ns.tryExec('curl', ['-sS', '-m', String(timeoutSeconds), '-o', '-', '-w', '\n%{http_code}', ...args]);
  const text = r.out;
  const cut = text.lastIndexOf('\n');
  return { status: text.slice(cut + 1).trim() || '000', body: text.slice(0, Math.max(cut, 0)) };
}
