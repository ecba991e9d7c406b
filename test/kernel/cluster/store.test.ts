// The cluster store against a real redis-server on a random loopback port: two gateways sharing
// grants and one-time-code claims, expiry, outages (killed, hung, cut off) and catch-up on reconnect.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisClusterStore, type ClusterEntryKind } from '../../../src/cluster/store.js';
import { createLogger } from '../../../src/shared/log.js';
import { freePort } from '../../helpers/ports.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';

/** Polls every 10 ms (these waits are for local sockets): whether `probe` held within `timeoutMs`. */
const until = (probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> => waitFor(probe, timeoutMs, 10);
const FILE = 'test/kernel/cluster/store.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['redis-server']));
const root = fileURLToPath(new URL('../../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./store-child.mjs', import.meta.url));

/** A redis-server child on 127.0.0.1:port, no persistence; restartable on the same port. */
class RedisServer {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', this.dir];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    if (!(await until(() => output.includes('Ready to accept connections') || child.exitCode !== null, 5000)) || child.exitCode !== null) {
      throw new Error(`redis-server did not start: ${output}`);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.child = undefined;
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }
}

/** A loopback TCP relay to redis that the test can cut and restore (same port): one gateway's outage. */
class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = tcpConnect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

type Seen = { kind: ClusterEntryKind; id: string; text: string; at: number; seq?: number };

const logger = createLogger('silent');
const stores: RedisClusterStore[] = [];
let prefixCounter = 0;

/** One gateway's store client, and every entry it was handed from the others. */
type StoreGateway = { store: RedisClusterStore; seen: Seen[] };

function gateway(url: string, name: string, prefix: string): StoreGateway {
  const seen: Seen[] = [];
  const store = RedisClusterStore.connect({
    url,
    prefix,
    gateway: name,
    logger,
    onEntry: (kind, id, text, seq) => seen.push({ kind, id, text, at: Date.now(), ...(seq !== undefined ? { seq } : {}) }),
    timeouts: { connectMs: 500, commandMs: 300, snapshotMs: 5000, backoff: { baseMs: 50, capMs: 400 } },
  });
  stores.push(store);
  return { store, seen };
}

describe.skipIf(skip)('RedisClusterStore against redis-server', () => {
  let server: RedisServer;
  let relay: Relay;
  let dir: string;
  let url: string;
  let raw: Redis;
  let prefix: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'knock-port-redis-'));
    server = new RedisServer(await freePort(), dir);
    await server.start();
    relay = new Relay(await freePort(), server.port);
    await relay.start();
    url = `redis://127.0.0.1:${server.port}`;
    raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    raw.on('error', () => undefined);
    await raw.connect();
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  afterAll(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    raw?.disconnect();
    await relay?.stop();
    await server?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A prefix of its own per test, unique across runs sharing a server. */
  function freshPrefix(): string {
    prefix = `kp-test-${process.pid}-${++prefixCounter}:`;
    return prefix;
  }

  /** Gateways A and B on a fresh prefix `p`, both synced; A reaches redis at `urlOfA` (the relay: an outage of A's alone). */
  async function twoSynced(urlOfA = url): Promise<{ p: string; a: StoreGateway; b: StoreGateway }> {
    const p = freshPrefix();
    const a = gateway(urlOfA, 'gw-a', p);
    const b = gateway(url, 'gw-b', p);
    expect(await a.store.whenSynced(3000)).toBe(true);
    expect(await b.store.whenSynced(3000)).toBe(true);
    return { p, a, b };
  }

  it('delivers a grant from A to B promptly, and not back to A', async () => {
    const { p, a, b } = await twoSynced();
    const t0 = Date.now();
    expect(await a.store.publishGrant('g1', 'grant-text-1', Date.now() + 30_000)).toBe(true);
    expect(await until(() => b.seen.some((e) => e.id === 'g1'), 1000)).toBe(true);
    const got = b.seen.find((e) => e.id === 'g1');
    expect(got).toMatchObject({ kind: 'grant', text: 'grant-text-1' });
    expect(got!.at - t0).toBeLessThan(500);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.seen.filter((e) => e.id === 'g1')).toEqual([]);
    expect(a.store.state()).toMatchObject({ connected: true, synced: true, published: 1, publishFailures: 0 });
    expect(b.store.state().lagMs).toBeGreaterThanOrEqual(0);
    expect(b.store.state().lagMs).toBeLessThan(500);

    // A revoke is its own entry, kept for its ttl, and also reaches B live.
    expect(await a.store.publishRevoke('r1', 'revoke-text-1', 10_000)).toBe(true);
    expect(await until(() => b.seen.some((e) => e.kind === 'revoke' && e.id === 'r1'), 1000)).toBe(true);
    const pttl = await raw.pttl(`${p}revoke:r1`);
    expect(pttl).toBeGreaterThan(9000);
    expect(pttl).toBeLessThanOrEqual(10_000);
    // The on-demand snapshot lists grants before revokes.
    const snap = await b.store.snapshot();
    expect(snap.map((e) => `${e.kind}:${e.id}`)).toEqual(['grant:g1', 'revoke:r1']);
  });

  it('a revoke deletes the grant keys it covers in the same script that stores and announces it', async () => {
    const { p, a, b } = await twoSynced();
    const expiresAt = Date.now() + 30_000;
    const grants = [
      ['a:service:10.0.0.1:vpn:alice', '10.0.0.1', 'vpn'],
      ['a:step2:10.0.0.1:vpn:alice', '10.0.0.1', 'vpn'],
      ['b:service:10.0.0.1:ssh:bob', '10.0.0.1', 'ssh'],
      ['a:service:10.0.0.2:vpn:alice', '10.0.0.2', 'vpn'],
    ] as const;
    for (const [id, ip, app] of grants) expect(await a.store.publishGrant(id, `text-${id}`, expiresAt, { ip, app })).toBe(true);
    // The address's index lives as long as its longest grant.
    expect(await raw.pexpiretime(`${p}grant-index:10.0.0.1`)).toBe(expiresAt);
    // One app's revoke: that app's grants of that address go, the rest stay.
    expect(await b.store.publishRevoke('r-vpn', 'revoke-vpn', 10_000, { ip: '10.0.0.1', app: 'vpn' })).toBe(true);
    expect(await until(() => a.seen.some((e) => e.id === 'r-vpn'), 1000)).toBe(true);
    const ids = async () => (await b.store.snapshot()).map((e) => `${e.kind}:${e.id}`).sort();
    expect(await ids()).toEqual(['grant:a:service:10.0.0.2:vpn:alice', 'grant:b:service:10.0.0.1:ssh:bob', 'revoke:r-vpn']);
    // Every app's revoke: the address's last grant goes too; another address's stays.
    expect(await b.store.publishRevoke('r-all', 'revoke-all', 10_000, { ip: '10.0.0.1' })).toBe(true);
    expect(await ids()).toEqual(['grant:a:service:10.0.0.2:vpn:alice', 'revoke:r-all', 'revoke:r-vpn']);
    expect(await raw.pttl(`${p}revoke:r-all`)).toBeGreaterThan(9000);
    // A store that is down takes nothing: the caller keeps the revoke (its journal) and retries.
    await a.store.close();
    expect(await a.store.publishRevoke('r-closed', 'x', 1000, { ip: '10.0.0.2' })).toBe(false);
    expect(await raw.exists(`${p}grant:a:service:10.0.0.2:vpn:alice`)).toBe(1);
  });

  it('orders grants and revokes by its own sequence, refuses a grant older than a revoke, and never fetches an oversized value', async () => {
    const { p, a, b } = await twoSynced();
    const expiresAt = Date.now() + 30_000;
    const scope = { ip: '10.0.0.9', app: 'vpn' };
    const first = await a.store.storeGrant('g1', '{"g":1}', expiresAt, { ...scope, order: 0, own: false });
    const second = await a.store.storeGrant('g2', '{"g":2}', expiresAt, { ...scope, order: 0, own: false });
    if (first.outcome !== 'stored' || second.outcome !== 'stored') throw new Error(`not stored: ${JSON.stringify([first, second])}`);
    // The store's TIME in microseconds at least, and increasing.
    expect(first.seq).toBeGreaterThanOrEqual((Date.now() - 60_000) * 1000);
    expect(second.seq).toBeGreaterThan(first.seq);
    const revoke = await b.store.storeRevoke('r1', '{"r":1}', 10_000, scope);
    expect(revoke).toBeGreaterThan(second.seq);
    // The announcement and the snapshot carry the sequence (outside the text).
    expect(await until(() => a.seen.some((e) => e.id === 'r1'), 1000)).toBe(true);
    expect(a.seen.find((e) => e.id === 'r1')).toMatchObject({ text: '{"r":1}', seq: revoke });
    expect((await a.store.snapshot()).find((e) => e.id === 'r1')).toMatchObject({ text: '{"r":1}', seq: revoke });
    // Republishing a grant the revoke deleted is refused (its own sequence is older), and so is a new one made
    // by a gateway that had not seen the revoke; one made after it is stored after it.
    expect(await a.store.storeGrant('g1', '{"g":1}', expiresAt, { ...scope, order: first.seq, own: true })).toEqual({ outcome: 'revoked' });
    expect(await a.store.storeGrant('g3', '{"g":3}', expiresAt, { ...scope, order: second.seq, own: false })).toEqual({ outcome: 'revoked' });
    expect(await raw.exists(`${p}grant:g1`, `${p}grant:g3`)).toBe(0);
    const after = await a.store.storeGrant('g4', '{"g":4}', expiresAt, { ...scope, order: revoke!, own: false });
    expect(after.outcome === 'stored' && after.seq > revoke!).toBe(true);
    // The sequence survives the loss of its key (the store's clock carries it on).
    await raw.del(`${p}seq`);
    const later = await b.store.storeRevoke('r2', '{"r":2}', 10_000, { ip: '10.0.0.8' });
    expect(later).toBeGreaterThan(revoke!);
    // Values too large to be messages (written by something else) are skipped unread, counted; the rest still come.
    const big = 4 * 1024 * 1024;
    for (const kind of ['grant', 'revoke', 'used-code']) await raw.setrange(`${p}${kind}:huge`, big - 1, 'x');
    const entries = await a.store.snapshot();
    expect(entries.map((e) => e.id).sort()).toEqual(['g4', 'r1', 'r2']);
    expect(a.store.state().oversized).toBe(3);
  });

  it('stores a grant with an absolute expiry: gone at expiresAt, absent from later snapshots', async () => {
    const p = freshPrefix();
    const a = gateway(url, 'gw-a', p);
    expect(await a.store.whenSynced(3000)).toBe(true);
    const expiresAt = Date.now() + 600;
    expect(await a.store.publishGrant('short', 'short-text', expiresAt)).toBe(true);
    expect(await raw.pexpiretime(`${p}grant:short`)).toBe(expiresAt);
    expect((await a.store.snapshot()).map((e) => e.id)).toEqual(['short']);
    await until(() => Date.now() > expiresAt + 50, 2000);
    expect(await raw.exists(`${p}grant:short`)).toBe(0);
    expect(await a.store.snapshot()).toEqual([]);
    // An expiry already past is refused, not stored.
    expect(await a.store.publishGrant('late', 'late-text', Date.now() - 1)).toBe(false);
    expect(await raw.exists(`${p}grant:late`)).toBe(0);
  });

  it('claims a one-time code once across gateways', async () => {
    const { p, a, b } = await twoSynced();
    const until60 = Date.now() + 60_000;
    expect(await a.store.claimUsedCode('alice:123456', 'code-a', until60)).toBe('claimed');
    expect(await b.store.claimUsedCode('alice:123456', 'code-b', until60)).toBe('already-used');
    expect(await a.store.claimUsedCode('alice:123456', 'code-a', until60)).toBe('already-used');
    expect(await raw.get(`${p}used-code:alice:123456`)).toBe('code-a');
    expect(await raw.pexpiretime(`${p}used-code:alice:123456`)).toBe(until60);
    // Concurrent claims: exactly one wins.
    const results = await Promise.all([a.store.claimUsedCode('bob:1', 'x', until60), b.store.claimUsedCode('bob:1', 'y', until60)]);
    expect(results.sort()).toEqual(['already-used', 'claimed']);
    // The winning claim is announced to the other gateway only.
    expect(await until(() => b.seen.some((e) => e.kind === 'used-code' && e.id === 'alice:123456'), 1000)).toBe(true);
    expect(a.seen.some((e) => e.id === 'alice:123456')).toBe(false);
  });

  it('fails fast while the server is down and hung, then reconnects to it on the same port', async () => {
    const { a, b } = await twoSynced();

    // Hung (SIGSTOP): a publish is bounded by the command timeout (300 ms here).
    server.signal('SIGSTOP');
    try {
      const t0 = Date.now();
      expect(await a.store.publishGrant('hung', 'hung-text', Date.now() + 30_000)).toBe(false);
      expect(Date.now() - t0).toBeLessThan(800);
    } finally {
      server.signal('SIGCONT');
    }

    await server.kill();
    try {
      expect(await until(() => !a.store.state().connected && !b.store.state().connected, 2000)).toBe(true);
      const failuresBefore = a.store.state().publishFailures;
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        expect(await a.store.publishGrant(`down-${i}`, 'x', Date.now() + 30_000)).toBe(false);
        expect(await a.store.publishRevoke(`down-r-${i}`, 'x', 1000)).toBe(false);
        expect(await a.store.claimUsedCode(`down-c-${i}`, 'x', Date.now() + 30_000)).toBe('unavailable');
        expect(Date.now() - t0).toBeLessThan(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      await expect(a.store.snapshot()).rejects.toThrow();
      const state = a.store.state();
      expect(state).toMatchObject({ connected: false, synced: false });
      expect(state.publishFailures).toBe(failuresBefore + 9);
      expect(state.lastError).toBeTruthy();
    } finally {
      await server.start();
    }
    await raw.ping().catch(() => undefined);
    expect(await until(() => a.store.state().connected && b.store.state().synced && a.store.state().synced, 3000)).toBe(true);
    expect(a.store.state().reconnects).toBeGreaterThanOrEqual(1);
    expect(await a.store.publishGrant('after', 'after-text', Date.now() + 30_000)).toBe(true);
    expect(await until(() => b.seen.some((e) => e.id === 'after'), 1000)).toBe(true);
  });

  it('catches up on reconnect: a snapshot with what was written meanwhile, then live, each entry once', async () => {
    // A reaches redis through the relay, so cutting the relay is A's outage while B keeps writing.
    const { a, b } = await twoSynced(`redis://127.0.0.1:${relay.port}`);
    expect(await b.store.publishGrant('before', 'before-text', Date.now() + 30_000)).toBe(true);
    expect(await until(() => a.seen.some((e) => e.id === 'before'), 1000)).toBe(true);

    await relay.stop();
    let relayUp = false;
    try {
      expect(await until(() => !a.store.state().connected, 2000)).toBe(true);
      const mark = a.seen.length;
      expect(await b.store.publishGrant('during', 'during-text', Date.now() + 30_000)).toBe(true);
      expect(await b.store.publishRevoke('during-revoke', 'revoke-text', 30_000)).toBe(true);
      expect(await a.store.publishGrant('a-during', 'x', Date.now() + 30_000)).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
      expect(a.seen.length).toBe(mark);

      // B keeps publishing while A reconnects and snapshots, so live updates race the snapshot.
      await relay.start();
      relayUp = true;
      const live: string[] = [];
      const deadline = Date.now() + 5000;
      for (let i = 0; i < 200 && Date.now() < deadline; i++) {
        const id = `live-${i}`;
        expect(await b.store.publishGrant(id, `${id}-text`, Date.now() + 30_000)).toBe(true);
        live.push(id);
        if (a.store.state().synced && i >= 20) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(await until(() => a.store.state().synced, 3000)).toBe(true);
      expect(await b.store.publishGrant('tail', 'tail-text', Date.now() + 30_000)).toBe(true);
      expect(await until(() => a.seen.some((e) => e.id === 'tail'), 1000)).toBe(true);

      const after = a.seen.slice(mark).map((e) => `${e.kind}:${e.id}`);
      expect(new Set(after).size, `duplicates in ${after.join(' ')}`).toBe(after.length);
      for (const id of ['before', 'during', ...live, 'tail']) expect(after).toContain(`grant:${id}`);
      expect(after).toContain('revoke:during-revoke');
      // The snapshot came first: its grants precede its revoke, and the revoke precedes the live tail.
      expect(after.indexOf('grant:during')).toBeLessThan(after.indexOf('revoke:during-revoke'));
      expect(after.indexOf('revoke:during-revoke')).toBeLessThan(after.indexOf('grant:tail'));
      const state = a.store.state();
      expect(state.reconnects).toBeGreaterThanOrEqual(1);
      expect(state.snapshots).toBeGreaterThanOrEqual(2);
    } finally {
      if (!relayUp) await relay.start();
    }
  });

  it('close() leaves nothing open: a client process exits by itself', async () => {
    const built = `${root}dist/cluster/store.js`;
    const newest = Math.max(...readdirSync(`${root}src/cluster`).map((f) => statSync(`${root}src/cluster/${f}`).mtimeMs));
    if (!existsSync(built) || statSync(built).mtimeMs < newest) {
      try {
        execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'ignore' });
      } catch {
        /* tsc emits despite type errors elsewhere; a missing output is checked below */
      }
    }
    expect(existsSync(built), 'dist/ is built (npm run build:ts)').toBe(true);
    const p = freshPrefix();
    const child = spawn(process.execPath, [CHILD, url, p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 10_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code, `child did not exit by itself: ${err}`).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    const result = JSON.parse(out.trim()) as { synced: boolean; published: boolean; claim: string; state: { connected: boolean } };
    expect(result).toMatchObject({ synced: true, published: true, claim: 'claimed', state: { connected: false } });
    expect(await raw.get(`${p}grant:child-grant`)).toBe('child-text');
  });
});
