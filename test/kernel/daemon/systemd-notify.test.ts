/**
 * The daemon as a systemd `Type=notify` service, without systemd: a python3 process binds a unix
 * datagram socket (Node cannot) and prints what it receives, and the real daemon runs in a
 * gateway namespace with NOTIFY_SOCKET, WATCHDOG_USEC and JOURNAL_STREAM set as systemd sets them.
 * READY=1 comes once the rules are in, capture is bound and HTTPS listens; WATCHDOG=1 at half
 * WATCHDOG_USEC; RELOADING=1 (with MONOTONIC_USEC) then READY=1 around SIGHUP, also when the new
 * config is refused; STOPPING=1 on SIGTERM. Its stdout is the "journal" file, so each line
 * carries its syslog priority.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { CLI, createSandbox, globalSection, writeFile, type Sandbox } from '../../helpers/sandbox.js';
import { TIME_SCALE, scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/systemd-notify', kernelSkipReason(['ip', 'nft', 'iptables-nft-save', 'python3', 'ss']));

/** Prints one JSON line per datagram: CLOCK_MONOTONIC at receipt (seconds) and the message. */
const LISTENER = `
import json, socket, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print(json.dumps({"bound": True}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({"t": time.monotonic(), "msg": data.decode()}), flush=True)
`;

interface Datagram {
  t: number;
  msg: string;
}

/** python3 bound to `path` (a path, or abstract with '@'), collecting what arrives. */
async function listen(
  path: string,
  spawnIn: (cmd: string, args: string[]) => ChildProcess = (cmd, args) => spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] }),
) {
  const proc = spawnIn('python3', ['-u', '-c', LISTENER, path]);
  const received: Datagram[] = [];
  let bound = false;
  let rest = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop()!;
    for (const line of lines.filter(Boolean)) {
      const parsed = JSON.parse(line) as Partial<Datagram> & { bound?: boolean };
      if (parsed.bound) bound = true;
      else received.push(parsed as Datagram);
    }
  });
  if (!(await waitFor(() => bound, 10_000))) throw new Error('the python3 listener did not bind');
  return { proc, received };
}

const messages = (received: Datagram[]) => received.map((d) => d.msg);

describe('the addon sends sd_notify datagrams', () => {
  if (skip) {
    it.skip('not run here (reason printed above)', () => {});
    return;
  }
  it('to a socket path and to an abstract socket; a missing socket is an errno-carrying error', async () => {
    const addon = loadNativeAddon();
    const dir = mkdtempSync(join(tmpdir(), 'kp-notify-'));
    try {
      const path = join(dir, 'notify.sock');
      const byPath = await listen(path);
      const abstract = `@kp-notify-test-${process.pid}`;
      const byName = await listen(abstract);
      addon.notify(path, 'READY=1\nSTATUS=by path');
      addon.notify(abstract, 'WATCHDOG=1');
      expect(await waitFor(() => byPath.received.length === 1 && byName.received.length === 1, 5_000)).toBe(true);
      expect(messages(byPath.received)).toEqual(['READY=1\nSTATUS=by path']);
      expect(messages(byName.received)).toEqual(['WATCHDOG=1']);
      byPath.proc.kill();
      byName.proc.kill();
      expect(() => addon.notify(join(dir, 'nobody.sock'), 'READY=1')).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'sendto' }));
      expect(() => addon.notify('relative.sock', 'READY=1')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the daemon under a (fake) systemd notify socket', () => {
  if (skip) {
    it.skip('not run here (reason printed above)', () => {});
    return;
  }
  let sandbox: Sandbox;
  let daemon: ChildProcess;
  let exited: Promise<number | null>;
  let received: Datagram[];
  let listener: ChildProcess;
  let configPath: string;
  let logPath: string;
  /** Where READY=1 was seen first, and what was true at that moment. */
  let atReady: { rules: string; listening: string; queues: string };

  const SETTINGS = {
    http_post_path: '/sd-knock-3b7e1c',
    https_post_path: '/sd-open-9a04d2',
    firewall_type: 'iptables',
    capture: 'nfqueue',
    queue_num: 3,
    step1_workers: 2,
  };
  const config = (https: number) => `${globalSection(sandbox, { ...SETTINGS, https_port: https })}svc:
  port: 8080
  access_key_http: [notify-http-key-1f3e9a]
  access_key_https: [notify-https-key-7c20d4]
  destination: local
  duration: 30
  step2_https_duration: 30
`;
  const logLines = () => readFileSync(logPath, 'utf8').split('\n').filter(Boolean);
  const gwExec = (cmd: string, args: string[]) => sandbox.gw.tryExec(cmd, args).out;

  beforeAll(async () => {
    sandbox = createSandbox('sdd');
    ({ proc: listener, received } = await listen(join(sandbox.dir, 'notify.sock')));
    configPath = writeFile(sandbox, 'config.yaml', config(443));
    logPath = join(sandbox.dir, 'journal.log');
    const out = openSync(logPath, 'w');
    const stat = fstatSync(out, { bigint: true });
    daemon = sandbox.gw.spawn(process.execPath, [CLI, 'run', '-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--iptables-variant', 'nft'], {
      stdio: ['ignore', out, out],
      env: {
        ...process.env,
        NOTIFY_SOCKET: join(sandbox.dir, 'notify.sock'),
        WATCHDOG_USEC: '1000000',
        // What systemd sets when stdout is the journal: the device and inode of that stream.
        JOURNAL_STREAM: `${stat.dev}:${stat.ino}`,
      },
    });
    closeSync(out);
    exited = new Promise((resolve) => daemon.once('exit', (code) => resolve(code)));
    // The moment READY=1 arrives, look at the gateway: everything it promises must already be true.
    const ready = await waitFor(() => daemon.exitCode !== null || messages(received).some((m) => m.startsWith('READY=1')), scaled(20_000), 5);
    atReady = {
      rules: gwExec('iptables-nft-save', []),
      listening: gwExec('ss', ['-Htln', 'sport = :443']),
      // Per namespace: the queues bound in the gateway's.
      queues: gwExec('cat', ['/proc/net/netfilter/nfnetlink_queue']),
    };
    if (!ready) throw new Error(`no READY=1:\n${messages(received).join('\n')}\n${readFileSync(logPath, 'utf8')}`);
  });

  afterAll(async () => {
    if (process.env.KP_DEBUG)
      console.log(received.map((d) => `${d.t.toFixed(3)} ${JSON.stringify(d.msg)}`).join('\n'), '\n', logLines().slice(0, 3).join('\n'));
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    listener?.kill();
    sandbox?.destroy();
  });

  it('sends READY=1 once, after the rules are in, both queues are bound and HTTPS listens', () => {
    expect(atReady.rules).toMatch(/NFQUEUE --queue-balance 3:4/);
    expect(atReady.listening).toContain(':443');
    const bound = atReady.queues
      .split('\n')
      .map((line) => Number(line.trim().split(/\s+/)[0]))
      .filter((n) => n === 3 || n === 4);
    expect(bound.sort()).toEqual([3, 4]);
    const ready = messages(received).filter((m) => m.startsWith('READY=1'));
    expect(ready).toEqual(['READY=1\nSTATUS=step 1 on port 80 (nfqueue 3-4), step 2 on HTTPS port 443']);
    // The watchdog runs from the start: its first ping precedes startup's end.
    expect(messages(received)[0]).toBe('WATCHDOG=1');
  });

  it('pings WATCHDOG=1 every WATCHDOG_USEC/2 (0.5 s)', async () => {
    const from = received.length;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const pings = received.slice(from).filter((d) => d.msg === 'WATCHDOG=1');
    expect(pings.length).toBeGreaterThanOrEqual(5);
    expect(pings.length).toBeLessThanOrEqual(7);
    const gaps = pings.slice(1).map((d, i) => d.t - pings[i]!.t);
    for (const gap of gaps) expect(gap).toBeGreaterThan(0.4);
    for (const gap of gaps) expect(gap).toBeLessThan(0.6 * TIME_SCALE + 0.2);
  });

  const nonWatchdog = (from: number) => received.slice(from).filter((d) => d.msg !== 'WATCHDOG=1');

  it('SIGHUP: RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC), then READY=1 on the new config', async () => {
    writeFileSync(configPath, config(8443));
    const from = received.length;
    daemon.kill('SIGHUP');
    expect(await waitFor(() => nonWatchdog(from).length >= 2, scaled(15_000))).toBe(true);
    const [reloading, ready] = nonWatchdog(from);
    const fields = reloading!.msg.split('\n');
    expect(fields[0]).toBe('RELOADING=1');
    const usec = Number(/^MONOTONIC_USEC=(\d+)$/.exec(fields[1]!)?.[1]);
    // Same clock as python's time.monotonic(), taken just before the datagram went out.
    expect(Math.abs(usec / 1e6 - reloading!.t)).toBeLessThan(1);
    expect(ready!.msg).toBe('READY=1\nSTATUS=step 1 on port 80 (nfqueue 3-4), step 2 on HTTPS port 8443');
    expect(gwExec('ss', ['-Htln', 'sport = :8443'])).toContain(':8443');
  });

  it('a refused reload: RELOADING=1, then READY=1 on the running config, saying so', async () => {
    writeFileSync(configPath, 'global:\n  no_such_key: 1\n');
    const from = received.length;
    daemon.kill('SIGHUP');
    expect(await waitFor(() => nonWatchdog(from).length >= 2, scaled(15_000))).toBe(true);
    const [reloading, ready] = nonWatchdog(from);
    expect(reloading!.msg).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+\n/);
    expect(ready!.msg).toMatch(/^READY=1\nSTATUS=step 1 on port 80 \(nfqueue 3-4\), step 2 on HTTPS port 8443 \(the last reload failed/);
  });

  it('logs with syslog priority prefixes on the journal stream', () => {
    const lines = logLines();
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      const match = /^<(\d)>(\{.*\})$/.exec(line);
      expect(match, line).not.toBeNull();
      const level = (JSON.parse(match![2]!) as { level: number }).level;
      expect(Number(match![1])).toBe({ 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 }[level]);
    }
    expect(lines.some((l) => l.startsWith('<6>') && l.includes('knock-port ready'))).toBe(true);
    expect(lines.some((l) => l.startsWith('<3>') && l.includes('config reload failed'))).toBe(true);
  });

  it('SIGTERM: STOPPING=1, then a clean exit', async () => {
    const from = received.length;
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor(() => nonWatchdog(from).length >= 1, 2_000);
    expect(nonWatchdog(from).map((d) => d.msg)).toEqual(['STOPPING=1\nSTATUS=stopping']);
    expect(logLines().at(-1)).toMatch(/^<6>\{.*knock-port stopped/);
  });
});
