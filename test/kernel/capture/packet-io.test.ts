/**
 * The native packet I/O addon against the real kernel, inside namespaces made here:
 * NFQUEUE batches and verdicts, NFLOG copies, raw SYN-ACKs, libnftables, and the
 * errors an operator sees. The addon runs in a child process inside the server namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, destroyAll, kernelSkipReason, Netns, requiredInCi, run, wire } from '../../helpers/netns.js';
import { CaptureChild, CHILD_SCRIPT, prepareBuild, runChild, udpBurst } from './child.js';

const skipReason = kernelSkipReason(['ip', 'nft', 'iptables', 'ip6tables', 'node', 'setpriv']) ?? requiredInCi(prepareBuild());
const skip = announceSkip('test/kernel/capture/packet-io.test.ts', skipReason);

const SERVER4 = '10.231.0.1';
const SERVER6 = 'fd00:231::1';
const RAW_MARK = 0x4b50;

/** Connects from `ns`; resolves to 'connected', 'timeout' or the error code; prints the send time. */
function tcpConnect(ns: Netns, addr: string, port: number, timeoutMs: number): { outcome: string; sentAt: bigint } {
  const out = ns.exec('node', [
    '-e',
    `
    const sentAt = process.hrtime.bigint();
    const s = require('net').connect({ host: '${addr}', port: ${port} });
    const done = (outcome) => { console.log(JSON.stringify({ outcome, sentAt: sentAt.toString() })); s.destroy(); process.exit(0); };
    s.on('connect', () => done('connected'));
    s.on('error', (e) => done(e.code));
    setTimeout(() => done('timeout'), ${timeoutMs});`,
  ]);
  const parsed = JSON.parse(out) as { outcome: string; sentAt: string };
  return { outcome: parsed.outcome, sentAt: BigInt(parsed.sentAt) };
}

describe.skipIf(skip)('native packet I/O in network namespaces', () => {
  let server: Netns | undefined;
  let client: Netns | undefined;
  const children: CaptureChild[] = [];
  const start = (...args: string[]): CaptureChild => {
    const child = CaptureChild.start(server!, ...args);
    children.push(child);
    return child;
  };

  beforeAll(() => {
    server = Netns.create('cap-s');
    client = Netns.create('cap-c');
    wire(server, client, { ifA: 'srv0', ifB: 'cli0', a4: SERVER4, b4: '10.231.0.2', a6: SERVER6, b6: 'fd00:231::2' });
    const s = server;
    s.exec('iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '7001', '-j', 'NFQUEUE', '--queue-num', '3']);
    s.exec('iptables', ['-A', 'INPUT', '-p', 'tcp', '--dport', '7001', '-j', 'NFQUEUE', '--queue-num', '3']);
    for (const tool of ['iptables', 'ip6tables']) s.exec(tool, ['-A', 'INPUT', '-p', 'tcp', '--dport', '7004', '-j', 'NFQUEUE', '--queue-num', '4']);
    s.exec(
      'nft',
      ['-f', '-'],
      `
      table inet kptest {
        chain input { type filter hook input priority 0; tcp dport 7003 log group 5 drop; }
        chain output { type filter hook output priority 0; meta mark ${RAW_MARK} counter; }
      }`,
    );
  });

  afterAll(() => {
    children.forEach((child) => child.kill());
    destroyAll([server, client]);
  });

  it('hands NFQUEUE packets to JS in batches and drops them on a JS verdict', async () => {
    // A listener the client could reach if the verdict were not a drop.
    const listener = server!.spawn('node', ['-e', "require('net').createServer().listen(7001, '0.0.0.0')"]);
    try {
      const queue = start('nfqueue', '3', '300');
      await queue.next('ready');
      udpBurst(client!, SERVER4, 7001, 200);
      expect(tcpConnect(client!, SERVER4, 7001, 1500).outcome).toBe('timeout');
      const done = await queue.stop();
      const batches = queue.batches();
      const received = batches.reduce((n, b) => n + (b.count as number), 0);
      expect(received).toBeGreaterThanOrEqual(201); // the burst and at least one SYN
      expect(Math.max(...batches.map((b) => b.count as number))).toBeGreaterThan(1);
      const stats = done.stats as Record<string, number>;
      expect(stats.verdicts).toBe(received);
      expect(stats.batchVerdicts).toBeGreaterThan(0);
      expect(stats.verdictMessages).toBeLessThan(received);
      expect(stats.kernelErrors).toBe(0);
      expect(done.kernel).toMatchObject({ queue: 3, waiting: 0, queueDropped: 0, userDropped: 0 });
    } finally {
      listener.kill('SIGKILL');
    }
  });

  it('says a queue is already bound by another process', async () => {
    const holder = start('nfqueue', '3');
    await holder.next('ready');
    const events = await runChild(server!, 'nfqueue', '3');
    expect(events).toContainEqual(expect.objectContaining({ event: 'error', message: 'NFQUEUE 3 is already bound by another process' }));
    await holder.stop();
  });

  it('says CAP_NET_ADMIN is needed when run without it', async () => {
    const events = await runChild(server!, 'nfqueue', '9');
    expect(events.some((e) => e.event === 'ready')).toBe(true); // as root it binds
    const denied = server!.tryExec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', CHILD_SCRIPT, 'nflog', '9']);
    expect(denied.out).toContain('cannot bind NFLOG group 9: need CAP_NET_ADMIN (run as root)');
  });

  it('receives NFLOG copies of packets the kernel drops, without batching delay', async () => {
    const log = start('nflog', '5');
    await log.next('ready');
    const { outcome, sentAt } = tcpConnect(client!, SERVER4, 7003, 400);
    expect(outcome).toBe('timeout');
    const first = await log.next('batch');
    expect(first.dports).toContain(7003);
    const delayMs = Number(BigInt(first.t as string) - sentAt) / 1e6;
    process.stderr.write(`NFLOG: first SYN reached JS ${delayMs.toFixed(1)} ms after connect()\n`);
    expect(delayMs).toBeLessThan(250); // the kernel's default batching adds about 1000 ms
    const done = await log.stop();
    expect((done.stats as Record<string, number>).enobufs).toBe(0);

    const busy = start('nflog', '5');
    await busy.next('ready');
    const events = await runChild(server!, 'nflog', '5');
    expect(events).toContainEqual(expect.objectContaining({ event: 'error', message: 'NFLOG group 5 is already bound by another process' }));
    await busy.stop();
  });

  it.each([
    ['IPv4', SERVER4],
    ['IPv6', SERVER6],
  ])('completes a client connect() with a raw SYN-ACK built in JS (%s)', async (_family, addr) => {
    const before = Number(/packets (\d+)/.exec(server!.exec('nft', ['list', 'chain', 'inet', 'kptest', 'output']))![1]);
    const responder = start('synack', '4', String(RAW_MARK));
    await responder.next('ready');
    expect(tcpConnect(client!, addr, 7004, 3000).outcome).toBe('connected');
    const done = await responder.stop();
    expect(done.answered).toBeGreaterThanOrEqual(1);
    expect(done.outcome).toEqual({ sent: done.answered, bufferFull: 0, failed: 0, codes: [] });
    const after = Number(/packets (\d+)/.exec(server!.exec('nft', ['list', 'chain', 'inet', 'kptest', 'output']))![1]);
    expect(after).toBeGreaterThan(before); // the SYN-ACK left with the daemon's socket mark
  });

  it('sends the rest of a staged batch when one packet has no route, and reports that one', async () => {
    const responder = start('synack', '4', String(RAW_MARK), '198.18.7.7'); // no route in the namespace
    await responder.next('ready');
    expect(tcpConnect(client!, SERVER4, 7004, 3000).outcome).toBe('connected');
    const done = await responder.stop();
    const outcome = done.outcome as { sent: number; failed: number; codes: string[] };
    expect(outcome.sent).toBe(done.answered);
    expect(outcome.failed).toBe(done.answered);
    expect(outcome.codes).toContain('ENETUNREACH');
  });

  it('runs nft commands in-process in its own namespace through libnftables', async () => {
    const [result] = (await runChild(server!, 'nft')).filter((e) => e.event === 'nft');
    expect(result).toBeDefined();
    expect(result!.checked).toBe('');
    expect(result!.tables).toContain('table inet kptest');
    expect(result!.tables).not.toContain('kpcheck'); // check mode is a dry run
    expect(JSON.stringify(result!.listed)).toContain('"val":"10.9.8.7"');
    expect(result!.error).toMatch(/^NftError: nft failed: Error: No such file or directory/);
    expect(server!.exec('nft', ['list', 'set', 'inet', 'kptest', 'grants'])).toContain('10.9.8.7');
    expect(run('nft', ['list', 'tables'])).not.toContain('kptest'); // nothing leaked into the root namespace
  });
});
