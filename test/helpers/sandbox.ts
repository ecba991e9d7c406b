/**
 * A small network for end-to-end tests: a gateway namespace running the real daemon,
 * a client namespace on its "WAN" side and a LAN host behind it, IPv4 and IPv6.
 * Addresses are documentation ranges, only ever inside these namespaces.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Netns, destroyAll, waitFor, wire } from './netns.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(REPO_ROOT, 'bin/knock-port.js');

export const ADDR = {
  gwWan4: '192.0.2.1',
  client4: '192.0.2.2',
  client4b: '192.0.2.3',
  gwWan6: '2001:db8:1::1',
  client6: '2001:db8:1::2',
  gwLan4: '198.51.100.1',
  lan4: '198.51.100.2',
  gwLan6: '2001:db8:2::1',
  lan6: '2001:db8:2::2',
} as const;

export const IF = { gwWan: 'kpwan0', clientWan: 'kpcli0', gwLan: 'kplan0', lanHost: 'kphost0' } as const;

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
  const created: Netns[] = [];
  const dir = mkdtempSync(join(tmpdir(), `kp-${prefix}-`));
  try {
    const gw = Netns.create(`${prefix}g`);
    created.push(gw);
    const client = Netns.create(`${prefix}c`);
    created.push(client);
    const lan = Netns.create(`${prefix}l`);
    created.push(lan);
    wire(gw, client, { ifA: IF.gwWan, ifB: IF.clientWan, a4: ADDR.gwWan4, b4: ADDR.client4, a6: ADDR.gwWan6, b6: ADDR.client6 });
    client.ip('addr', 'add', `${ADDR.client4b}/24`, 'dev', IF.clientWan);
    wire(gw, lan, { ifA: IF.gwLan, ifB: IF.lanHost, a4: ADDR.gwLan4, b4: ADDR.lan4, a6: ADDR.gwLan6, b6: ADDR.lan6 });
    lan.ip('route', 'add', 'default', 'via', ADDR.gwLan4);
    lan.ip('-6', 'route', 'add', 'default', 'via', ADDR.gwLan6);
    gw.sysctl('net.ipv4.ip_forward', '1');
    gw.sysctl('net.ipv6.conf.all.forwarding', '1');
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', '/CN=knock-port.test', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    return {
      gw,
      client,
      lan,
      dir,
      cert,
      key,
      destroy() {
        destroyAll(created);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    destroyAll(created);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export function writeFile(sandbox: Sandbox, name: string, text: string): string {
  const path = join(sandbox.dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

export interface Daemon {
  proc: ChildProcess;
  output: string[];
  /** Resolves true once a log line matches, false after timeoutMs. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<boolean>;
  /** Sends the signal and waits for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `knock-port run` inside the gateway namespace. */
export function startDaemon(sandbox: Sandbox, args: string[]): Daemon {
  const proc = sandbox.gw.spawn(process.execPath, [CLI, 'run', ...args]);
  const output: string[] = [];
  const collect = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean));
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    output,
    waitForLog: (pattern, timeoutMs = 15_000) => waitFor(() => output.some((l) => pattern.test(l)), timeoutMs),
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** curl from a namespace; returns the HTTP status ("000" when nothing answered) and body. */
export function curl(ns: Netns, args: string[], timeoutSeconds = 2): { status: string; body: string } {
  const r = ns.tryExec('curl', ['-sS', '-m', String(timeoutSeconds), '-o', '-', '-w', '\n%{http_code}', ...args]);
  const text = r.out;
  const cut = text.lastIndexOf('\n');
  return { status: text.slice(cut + 1).trim() || '000', body: text.slice(0, Math.max(cut, 0)) };
}
