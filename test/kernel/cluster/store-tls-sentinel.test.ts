// The cluster store as an operator configures it, against real redis-server processes on loopback:
// a config file read by the loader, turned into store options by storeOptionsFromConfig, then
// two gateways over TLS (and failing closed with the wrong CA), through a password-protected
// Sentinel across a failover, and through a Sentinel that itself speaks TLS.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { storeOptionsFromConfig } from '../../../src/cluster/from-config.js';
import { RedisClusterStore, type ClusterEntryKind } from '../../../src/cluster/store.js';
import { loadConfigFile } from '../../../src/config/load.js';
import type { ClusterConfig } from '../../../src/config/types.js';
import { createLogger } from '../../../src/shared/log.js';
import { freePort } from '../../helpers/ports.js';
import { VALID } from '../../unit/config/helpers.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';

/** Polls every 10 ms (these waits are for local sockets): whether `probe` held within `timeoutMs`. */
/** The apps of the unit tests' valid config: a cluster needs a config that loads. */
const VALID_APPS = VALID.slice(VALID.indexOf('openvpn:'));
const until = (probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> => waitFor(probe, timeoutMs, 10);
const FILE = 'test/kernel/cluster/store-tls-sentinel.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['redis-server', 'openssl']));

const KEY = randomBytes(16).toString('hex');
const PASSWORD = `data-${randomBytes(12).toString('hex')}`;
const SENTINEL_PASSWORD = `sentinel-${randomBytes(12).toString('hex')}`;
/** Short reconnect steps, so following a failover is bounded by Sentinel, not by the backoff. */
const TIMEOUTS = { connectMs: 1000, commandMs: 500, snapshotMs: 5000, backoff: { baseMs: 50, capMs: 500 } };
/** Longest wait for Sentinel to notice the master is gone and promote the replica. */
const FAILOVER_MS = 30_000;

/** Every redis-server child of this file, killed in afterAll and, as a last resort, when the worker exits. */
const daemons = new Set<Daemon>();
process.once('exit', () => {
  for (const daemon of daemons) daemon.child.kill('SIGKILL');
});

/** A redis-server (data node or Sentinel) child whose output the test can wait for. */
class Daemon {
  readonly child: ChildProcess;
  private output = '';

  constructor(
    readonly name: string,
    args: string[],
  ) {
    this.child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    daemons.add(this);
    this.child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.on('error', (error) => (this.output += `\nspawn failed: ${error.message}`));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits, bounded, until the output contains `text`; throws with the output's tail otherwise. */
  async waitFor(text: string, timeoutMs: number): Promise<void> {
    if (await until(() => this.output.includes(text) || !this.running, timeoutMs)) {
      if (this.output.includes(text)) return;
    }
    throw new Error(`${this.name}: no '${text}' within ${timeoutMs} ms${this.running ? '' : ' (exited)'}:\n${this.output.slice(-2000)}`);
  }

  async kill(): Promise<void> {
    if (this.running) {
      const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
      this.child.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    daemons.delete(this);
  }
}

/** A data node on 127.0.0.1: plain on `port`, or TLS only when `tls` is given. No persistence. */
function dataNode(name: string, dir: string, port: number, extra: string[], tls?: ServerPki): Daemon {
  const listen = tls
    ? [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        tls.cert,
        '--tls-key-file',
        tls.key,
        '--tls-ca-cert-file',
        tls.ca,
        '--tls-auth-clients',
        'no',
      ]
    : ['--port', String(port)];
  return new Daemon(name, [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, ...extra]);
}

interface ServerPki {
  ca: string;
  cert: string;
  key: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

/** A throwaway CA (`name.pem`, `name.key`), valid for a day. */
function makeCa(dir: string, name: string): { cert: string; key: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=knock-port test ${name}`]);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/** A server certificate for 127.0.0.1 signed by `ca` (also usable as a client one: replication and Sentinel connect with it). */
function makeServerCert(dir: string, ca: { cert: string; key: string }): ServerPki {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(
    join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  const serial = `0x${randomBytes(8).toString('hex')}`;
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    serial,
    '-days',
    '1',
    '-out',
    'server.pem',
    '-extfile',
    'server.ext',
  ]);
  return { ca: ca.cert, cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

/** A secret file as an operator would write it: owner-only, with a trailing line break. */
function secretFile(path: string, text: string): string {
  writeFileSync(path, `${text}\n`, { mode: 0o600 });
  return path;
}

let configCounter = 0;

/** Writes gateway `gateway`'s config file with `redis` as global.cluster.redis and loads it as the daemon would. */
function loadCluster(dir: string, gateway: string, prefix: string, redis: string[]): ClusterConfig {
  const path = join(dir, `config-${++configCounter}.yaml`);
  writeFileSync(
    path,
    `global:
  http_post_path: /a8Fq2Lm9Zx
  https_post_path: /Qp3Rt7Vw1Y
  step1_2_rate_limit_per_minute: 60
  interface_ext: eth0
  interface_int: eth1
  cluster:
    gateway: ${gateway}
    key: ${KEY}
    prefix: "${prefix}"
    redis:
${redis.map((line) => `      ${line}\n`).join('')}${VALID_APPS}`,
    { mode: 0o600 },
  );
  const config = loadConfigFile(path);
  expect(config.warnings).toBeUndefined();
  return config.global.cluster!;
}

type Seen = { kind: ClusterEntryKind; id: string; text: string };

const logger = createLogger('silent');
const stores: RedisClusterStore[] = [];
const rawClients: Redis[] = [];
let prefixCounter = 0;

function freshPrefix(): string {
  return `kp-tls-sentinel-${process.pid}-${++prefixCounter}:`;
}

/** One gateway's store, with the options the daemon derives from its config. */
function gateway(cluster: ClusterConfig): { store: RedisClusterStore; seen: Seen[] } {
  const seen: Seen[] = [];
  const store = RedisClusterStore.connect({
    ...storeOptionsFromConfig(cluster),
    logger,
    onEntry: (kind, id, text) => seen.push({ kind, id, text }),
    timeouts: TIMEOUTS,
  });
  stores.push(store);
  return { store, seen };
}

/** A plain client straight to a data node, to look at keys behind the stores' back. */
async function rawClient(port: number): Promise<Redis> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    password: PASSWORD,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
  client.on('error', () => undefined);
  rawClients.push(client);
  await client.connect();
  return client;
}

/** Two gateways share a grant (stored as the sync stores it: the grant script) and a one-time-code claim. */
async function expectSharing(a: ReturnType<typeof gateway>, b: ReturnType<typeof gateway>, id: string): Promise<void> {
  expect(await a.store.whenSynced(5000)).toBe(true);
  expect(await b.store.whenSynced(5000)).toBe(true);
  const stored = await a.store.storeGrant(id, `${id}-text`, Date.now() + 60_000, { ip: '10.0.0.1', app: 'vpn', order: 0, own: false });
  expect(stored.outcome).toBe('stored');
  expect(await until(() => b.seen.some((e) => e.kind === 'grant' && e.id === id && e.text === `${id}-text`), 2000)).toBe(true);
  const expiresAt = Date.now() + 60_000;
  expect(await a.store.claimUsedCode(`alice:${id}`, 'code-a', expiresAt)).toBe('claimed');
  expect(await b.store.claimUsedCode(`alice:${id}`, 'code-b', expiresAt)).toBe('already-used');
  expect(await until(() => b.seen.some((e) => e.kind === 'used-code' && e.id === `alice:${id}`), 2000)).toBe(true);
}

/** A store that must not connect: it keeps an error, never syncs, and refuses to publish. */
async function expectFailsClosed(store: RedisClusterStore, error: RegExp): Promise<void> {
  expect(await until(() => store.state().lastError !== undefined, 5000)).toBe(true);
  expect(await store.whenSynced(1500)).toBe(false);
  expect(store.state()).toMatchObject({ connected: false, synced: false });
  expect(store.state().lastError).toMatch(error);
  expect(await store.publishGrant('never', 'never-text', Date.now() + 60_000)).toBe(false);
  expect(await store.claimUsedCode('never:1', 'never', Date.now() + 60_000)).toBe('unavailable');
}

describe.skipIf(skip)('cluster store over TLS and through Sentinel, configured from a file', () => {
  let dir: string;
  let pki: ServerPki;
  let wrongCa: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'knock-port-tls-sentinel-'));
    pki = makeServerCert(dir, makeCa(dir, 'ca'));
    wrongCa = makeCa(dir, 'other-ca').cert;
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  afterAll(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    for (const client of rawClients.splice(0)) client.disconnect();
    await Promise.all([...daemons].map((d) => d.kill()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('one server over TLS (rediss://)', () => {
    let port: number;
    let passwordFile: string;

    beforeAll(async () => {
      port = await freePort();
      // An ACL user limited to the store's commands and its prefix, and the default user off: the
      // stores must log in with username and password_file, and need nothing more (the docs suggest this ACL).
      const commands = [
        ...['set', 'get', 'strlen', 'del', 'hset', 'hget', 'hgetall', 'hdel', 'pexpire', 'pexpireat', 'pexpiretime', 'pttl', 'time'],
        ...['scan', 'publish', 'subscribe', 'eval', 'multi', 'exec', 'discard', 'ping', 'info', 'client|setname', 'select'],
      ];
      const acl = [
        '--user',
        'default',
        'off',
        '--user',
        'knock-port',
        'on',
        `>${PASSWORD}`,
        '~kp-tls-sentinel-*',
        '&kp-tls-sentinel-*',
        '-@all',
        ...commands.map((c) => `+${c}`),
      ];
      const server = dataNode('tls server', dir, port, acl, pki);
      await server.waitFor('Ready to accept connections', 10_000);
      passwordFile = secretFile(join(dir, 'tls.password'), PASSWORD);
    });

    const redis = (ca: string): string[] => [
      `url: rediss://127.0.0.1:${port}/0`,
      'username: knock-port',
      `password_file: ${passwordFile}`,
      'tls:',
      `  ca: ${ca}`,
    ];

    it('shares grants and one-time-code claims between two gateways', async () => {
      const prefix = freshPrefix();
      const a = gateway(loadCluster(dir, 'gw-a', prefix, redis(pki.ca)));
      const b = gateway(loadCluster(dir, 'gw-b', prefix, redis(pki.ca)));
      await expectSharing(a, b, 'tls-grant');
      expect(a.seen.some((e) => e.id === 'tls-grant')).toBe(false);
      // The revoke script, the snapshot's fetch script and the heartbeat's TIME pass the ACL too.
      expect(await b.store.storeRevoke('tls-revoke', 'revoke-text', 10_000, { ip: '10.0.0.1' })).toBeGreaterThan(0);
      expect((await a.store.snapshot()).map((e) => `${e.kind}:${e.id}`)).toEqual(['used-code:alice:tls-grant', 'revoke:tls-revoke']);
      expect(await until(() => a.store.state().clockOffsetMs !== undefined, 3000)).toBe(true);
    });

    it('fails closed when the CA did not sign the server certificate', async () => {
      const prefix = freshPrefix();
      const wrong = gateway(loadCluster(dir, 'gw-a', prefix, redis(wrongCa)));
      await expectFailsClosed(wrong.store, /certificate/i);
      // The server itself is fine: a gateway with the right CA still gets in.
      const right = gateway(loadCluster(dir, 'gw-b', prefix, redis(pki.ca)));
      expect(await right.store.whenSynced(5000)).toBe(true);
    });
  });

  describe('a master, a replica and a Sentinel with passwords of their own', () => {
    let masterPort: number;
    let replicaPort: number;
    let sentinelPort: number;
    let master: Daemon;
    let sentinel: Daemon;
    let redis: string[];

    beforeAll(async () => {
      [masterPort, replicaPort, sentinelPort] = await Promise.all([freePort(), freePort(), freePort()]);
      const auth = ['--requirepass', PASSWORD, '--masterauth', PASSWORD];
      master = dataNode('master', dir, masterPort, auth);
      await master.waitFor('Ready to accept connections', 10_000);
      const replica = dataNode('replica', dir, replicaPort, [...auth, '--replicaof', '127.0.0.1', String(masterPort)]);
      await replica.waitFor('MASTER <-> REPLICA sync: Finished with success', 10_000);
      // Sentinel rewrites its config file, so it gets one of its own in the temporary directory.
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          `port ${sentinelPort}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `requirepass ${SENTINEL_PASSWORD}`,
          // An ACL user of its own too, for `sentinel_username`.
          `user kp-sentinel on >${SENTINEL_PASSWORD} allchannels +@all`,
          `sentinel monitor knockport 127.0.0.1 ${masterPort} 1`,
          `sentinel auth-pass knockport ${PASSWORD}`,
          'sentinel down-after-milliseconds knockport 1000',
          'sentinel failover-timeout knockport 3000',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      sentinel = new Daemon('sentinel', [conf, '--sentinel']);
      await sentinel.waitFor('+monitor master knockport', 10_000);
      // Without the replica known to Sentinel there is nothing to promote.
      await sentinel.waitFor(`+slave slave 127.0.0.1:${replicaPort}`, 20_000);
      const sentinelPasswordFile = secretFile(join(dir, 'sentinel.password'), SENTINEL_PASSWORD);
      const passwordFile = secretFile(join(dir, 'data.password'), PASSWORD);
      redis = [
        `sentinels: [127.0.0.1:${sentinelPort}]`,
        'sentinel_name: knockport',
        `password_file: ${passwordFile}`,
        `sentinel_password_file: ${sentinelPasswordFile}`,
      ];
    });

    it('refuses to start without the Sentinel password (fails closed)', async () => {
      const withoutSentinelPassword = redis.filter((line) => !line.startsWith('sentinel_password_file'));
      const store = gateway(loadCluster(dir, 'gw-a', freshPrefix(), withoutSentinelPassword)).store;
      await expectFailsClosed(store, /sentinel/i);
    });

    it('reaches the master as a Sentinel ACL user (sentinel_username)', async () => {
      const prefix = freshPrefix();
      const asUser = [...redis, 'sentinel_username: kp-sentinel'];
      const a = gateway(loadCluster(dir, 'gw-a', prefix, asUser));
      const b = gateway(loadCluster(dir, 'gw-b', prefix, asUser));
      await expectSharing(a, b, 'as-user');
      // A user Sentinel does not know fails closed.
      const stranger = gateway(loadCluster(dir, 'gw-c', freshPrefix(), [...redis, 'sentinel_username: nobody'])).store;
      await expectFailsClosed(stranger, /sentinel/i);
    });

    it('follows a failover: both gateways reconnect to the promoted replica by themselves', async () => {
      const prefix = freshPrefix();
      const a = gateway(loadCluster(dir, 'gw-a', prefix, redis));
      const b = gateway(loadCluster(dir, 'gw-b', prefix, redis));
      await expectSharing(a, b, 'before');
      // The grant reached the replica before its master dies.
      const replicaClient = await rawClient(replicaPort);
      // (Stored as `<seq> <text>`.)
      expect(await until(async () => (await replicaClient.get(`${prefix}grant:before`))?.endsWith(' before-text') === true, 5000)).toBe(true);
      const snapshotsBefore = b.store.state().snapshots;

      await master.kill();
      expect(await until(() => !a.store.state().connected && !b.store.state().connected, 5000)).toBe(true);
      await sentinel.waitFor(`+switch-master knockport 127.0.0.1 ${masterPort} 127.0.0.1 ${replicaPort}`, FAILOVER_MS);

      const reconnected = (): boolean => [a, b].every(({ store }) => store.state().connected && store.state().synced);
      expect(await until(reconnected, FAILOVER_MS), JSON.stringify([a.store.state(), b.store.state()])).toBe(true);
      expect(a.store.state().reconnects).toBeGreaterThanOrEqual(1);
      expect(b.store.state().reconnects).toBeGreaterThanOrEqual(1);
      // Each reconnect replays the snapshot, the earlier grant included: the replica had it.
      expect(b.store.state().snapshots).toBeGreaterThan(snapshotsBefore);
      expect(b.seen.filter((e) => e.kind === 'grant' && e.id === 'before').length).toBeGreaterThanOrEqual(2);
      expect((await b.store.snapshot()).map((e) => `${e.kind}:${e.id}`)).toContain('grant:before');

      // Live updates flow again, through the new master.
      expect(await a.store.publishGrant('after', 'after-text', Date.now() + 60_000)).toBe(true);
      expect(await until(() => b.seen.some((e) => e.kind === 'grant' && e.id === 'after'), 2000)).toBe(true);
      // Sentinel drops the promoted node's client connections; a new one reads what the gateways wrote.
      const promotedClient = await rawClient(replicaPort);
      expect(await promotedClient.get(`${prefix}grant:after`)).toBe('after-text');
      expect(await b.store.claimUsedCode('alice:after', 'code-b', Date.now() + 60_000)).toBe('claimed');
      expect(await a.store.claimUsedCode('alice:after', 'code-a', Date.now() + 60_000)).toBe('already-used');
    });
  });

  describe('a Sentinel and a master that both speak TLS only', () => {
    let redis: (ca: string) => string[];

    beforeAll(async () => {
      const [masterPort, sentinelPort] = await Promise.all([freePort(), freePort()]);
      const tlsMaster = dataNode('tls master', dir, masterPort, ['--requirepass', PASSWORD], pki);
      await tlsMaster.waitFor('Ready to accept connections', 10_000);
      const conf = join(dir, 'tls-sentinel.conf');
      writeFileSync(
        conf,
        [
          'port 0',
          `tls-port ${sentinelPort}`,
          `tls-cert-file ${pki.cert}`,
          `tls-key-file ${pki.key}`,
          `tls-ca-cert-file ${pki.ca}`,
          'tls-auth-clients no',
          // Sentinel reaches the master over TLS too.
          'tls-replication yes',
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor knockport-tls 127.0.0.1 ${masterPort} 1`,
          `sentinel auth-pass knockport-tls ${PASSWORD}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const tlsSentinel = new Daemon('tls sentinel', [conf, '--sentinel']);
      await tlsSentinel.waitFor('+monitor master knockport-tls', 10_000);
      const passwordFile = secretFile(join(dir, 'tls-data.password'), PASSWORD);
      redis = (ca) => [`sentinels: [127.0.0.1:${sentinelPort}]`, 'sentinel_name: knockport-tls', `password_file: ${passwordFile}`, 'tls:', `  ca: ${ca}`];
    });

    it('reaches the master over TLS through the Sentinel over TLS', async () => {
      const prefix = freshPrefix();
      const a = gateway(loadCluster(dir, 'gw-a', prefix, redis(pki.ca)));
      const b = gateway(loadCluster(dir, 'gw-b', prefix, redis(pki.ca)));
      await expectSharing(a, b, 'tls-sentinel-grant');
    });

    it('fails closed when the CA did not sign the Sentinel certificate', async () => {
      const store = gateway(loadCluster(dir, 'gw-a', freshPrefix(), redis(wrongCa))).store;
      // ioredis's Sentinel probe drops the TLS error itself: what remains is that no Sentinel answered.
      await expectFailsClosed(store, /sentinels are unreachable/i);
    });
  });
});
