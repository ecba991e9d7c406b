import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Grant } from '../../../src/firewall/types.js';
import { canonicalIp } from '../../../src/shared/ip.js';
import { reconcile } from '../../../src/sessions/reconcile.js';
import type { SessionRecord } from '../../../src/sessions/record.js';
import { parseStateFile, serializeStateFile } from '../../../src/sessions/state-file.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { capturedLogger } from './log-capture.js';

const T0 = Date.parse('2025-01-01T00:00:00Z');

describe('canonicalIp', () => {
  it('gives one spelling per address', () => {
    expect(canonicalIp('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(canonicalIp('::FFFF:102:304')).toBe('1.2.3.4');
    expect(canonicalIp('2001:DB8:0:0::1')).toBe('2001:db8::1');
    expect(canonicalIp('fe80::1%eth0')).toBe('fe80::1');
    expect(canonicalIp('10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalIp('10.0.0.256')).toBeUndefined();
    expect(canonicalIp('example.com')).toBeUndefined();
  });
});

describe('reconcile', () => {
  const saved: SessionRecord[] = [
    { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: T0 + 50_000 },
    { ip: '10.0.0.2', app: 'vpn', user: 'bob', step: 'service', expiresAt: T0 + 50_000 },
    { ip: '2001:db8::2', app: 'ssh', user: 'carol', step: 'step2', expiresAt: T0 + 5_000 },
  ];
  const kernel: Grant[] = [
    { kind: 'service', family: 4, address: '10.0.0.1', app: 'vpn', protocol: 'udp', port: 1194, expiresInSeconds: 30 },
    { kind: 'step2', family: 6, address: '2001:DB8:0::2', expiresInSeconds: 3 },
    { kind: 'service', family: 4, address: '10.0.0.9', app: 'ssh', protocol: 'tcp', port: 22, expiresInSeconds: 100 },
  ];

  it('keeps records the kernel still holds, with the kernel expiry, and drops the rest', () => {
    const result = reconcile(saved, kernel, T0);
    expect(result.dropped).toBe(1);
    expect(result.records).toContainEqual({ ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: T0 + 30_000 });
    expect(result.records).toContainEqual({ ip: '2001:db8::2', app: 'ssh', user: 'carol', step: 'step2', expiresAt: T0 + 3_000 });
    expect(result.records.find((r) => r.ip === '10.0.0.2')).toBeUndefined();
  });

  it('lists kernel grants without a record as unattributed', () => {
    const result = reconcile([], kernel, T0);
    expect(result.unattributed).toBe(3);
    expect(result.records).toContainEqual({ ip: '10.0.0.9', app: 'ssh', user: null, step: 'service', expiresAt: T0 + 100_000 });
    expect(result.records).toContainEqual({ ip: '2001:db8::2', app: null, user: null, step: 'step2', expiresAt: T0 + 3_000 });
  });

  it('does not attribute a service grant of another app', () => {
    const other: SessionRecord = { ip: '10.0.0.1', app: 'ssh', user: 'alice', step: 'service', expiresAt: T0 + 50_000 };
    expect(reconcile([other], kernel.slice(0, 1), T0)).toMatchObject({ dropped: 1, unattributed: 1 });
  });

  it("uses each record's own expiry: another user's longer window on the same address brings nothing back", () => {
    // One kernel element per address for step 2: bob's 60 s window keeps it alive after alice's 5 s one ended.
    const windows: SessionRecord[] = [
      { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'step2', expiresAt: T0 - 1_000 },
      { ip: '10.0.0.1', app: 'ssh', user: 'bob', step: 'step2', expiresAt: T0 + 55_000 },
      { ip: '10.0.0.1', app: 'vpn', user: 'carol', step: 'step2', expiresAt: T0 + 2_000 },
    ];
    const result = reconcile(windows, [{ kind: 'step2', family: 4, address: '10.0.0.1', expiresInSeconds: 55 }], T0);
    expect(result.records.find((r) => r.user === 'alice')).toBeUndefined();
    expect(result.records).toContainEqual({ ip: '10.0.0.1', app: 'ssh', user: 'bob', step: 'step2', expiresAt: T0 + 55_000 });
    // Kept, but not stretched to the kernel's longer expiry.
    expect(result.records).toContainEqual({ ip: '10.0.0.1', app: 'vpn', user: 'carol', step: 'step2', expiresAt: T0 + 2_000 });
    expect(result).toMatchObject({ dropped: 1, unattributed: 0 });
  });

  it('drops an expired service record even while the kernel grant of its (ip, app) lives on for another user', () => {
    const services: SessionRecord[] = [
      { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: T0 - 1 },
      { ip: '10.0.0.1', app: 'vpn', user: 'bob', step: 'service', expiresAt: T0 + 30_000 },
    ];
    const result = reconcile(services, kernel.slice(0, 1), T0);
    expect(result.records.map((r) => r.user)).toEqual(['bob']);
  });
});

describe('state file format', () => {
  it('round-trips records and rejects anything unexpected', () => {
    const records: SessionRecord[] = [{ ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: T0 + 1000 }];
    expect(parseStateFile(serializeStateFile(records))).toEqual({ kind: 'ok', records });
    for (const bad of [
      '',
      '{',
      '[]',
      '{"version":2,"sessions":[]}',
      '{"version":1,"sessions":[{"ip":"::FFFF:1.2.3.4","app":"a","user":"u","step":"step2","expiresAt":"2025-01-01T00:00:00.000Z"}]}',
    ]) {
      expect(parseStateFile(bad).kind, bad).toBe('corrupt');
    }
  });
});

describe('SessionStore', () => {
  let dir: string;
  let now: number;
  const clock = (): number => now;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-sessions-'));
    now = T0;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const stateFile = (): string => join(dir, 'state', 'sessions.json');
  const open = (grants: Grant[] = [], saveDelayMs = 20) =>
    SessionStore.open({ stateDir: join(dir, 'state'), logger: capturedLogger().logger, saveDelayMs, now: clock }, grants);

  it('extends a repeated grant, answers step-2 windows per IP, expires records', async () => {
    const store = await open();
    store.record('10.0.0.1', 'vpn', 'alice', 'step2', 5);
    now += 3000;
    store.record('10.0.0.1', 'vpn', 'alice', 'step2', 5);
    store.record('10.0.0.1', 'ssh', 'bob', 'step2', 2);
    expect(store.size).toBe(2);
    expect(store.step2Windows('10.0.0.1')).toEqual(
      expect.arrayContaining([
        { app: 'vpn', user: 'alice', expiresAt: T0 + 8000 },
        { app: 'ssh', user: 'bob', expiresAt: T0 + 5000 },
      ]),
    );
    expect(store.step2Windows('10.0.0.2')).toEqual([]);
    now += 2500;
    expect(store.step2Windows('10.0.0.1')).toEqual([{ app: 'vpn', user: 'alice', expiresAt: T0 + 8000 }]);
    now += 3000;
    expect(store.list()).toEqual([]);
    await store.close();
  });

  it('revokes all of an IP, or one app', async () => {
    const store = await open();
    store.record('10.0.0.1', 'vpn', 'alice', 'service', 60);
    store.record('10.0.0.1', 'ssh', 'alice', 'service', 60);
    store.record('10.0.0.2', 'ssh', 'bob', 'service', 60);
    expect(store.revoke('10.0.0.1', 'ssh').map((r) => r.app)).toEqual(['ssh']);
    expect(store.revoke('10.0.0.1')).toHaveLength(1);
    expect(store.list().map((r) => r.ip)).toEqual(['10.0.0.2']);
    await store.close();
  });

  it('coalesces a burst of grants into few writes and never loses one on close', async () => {
    const store = await open([], 60_000); // the debounce never fires by itself here
    for (let i = 0; i < 500; i++) store.record(`10.1.${i >> 8}.${i & 0xff}`, 'vpn', 'alice', 'service', 60);
    await expect(readFile(stateFile(), 'utf8')).rejects.toThrow(/ENOENT/);
    await store.close();
    const saved = parseStateFile(await readFile(stateFile(), 'utf8'));
    expect(saved.kind === 'ok' && saved.records.length).toBe(500);
    expect((await readdir(join(dir, 'state'))).sort()).toEqual(['sessions.json']); // no temp file left
  });

  it('writes in the background after the debounce delay', async () => {
    const store = await open([], 10);
    store.record('10.0.0.1', 'vpn', 'alice', 'service', 60);
    const deadline = Date.now() + 5000;
    let text = '';
    while (Date.now() < deadline && !text.includes('10.0.0.1')) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = await readFile(stateFile(), 'utf8').catch(() => '');
    }
    expect(text).toContain('"ip": "10.0.0.1"');
    await store.close();
  });

  it('restores after a restart, reconciled with the kernel', async () => {
    const first = await open();
    first.record('10.0.0.1', 'vpn', 'alice', 'service', 60);
    first.record('10.0.0.2', 'vpn', 'bob', 'service', 60);
    await first.close();
    now += 10_000;
    const kernel: Grant[] = [{ kind: 'service', family: 4, address: '10.0.0.1', app: 'vpn', expiresInSeconds: 50 }];
    const second = await open(kernel);
    expect(second.list()).toEqual([{ ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: now + 50_000 }]);
    await second.close();
  });

  it('replaces the unattributed record of a kernel grant once the grant is known with its user', async () => {
    const kernel: Grant[] = [
      { kind: 'service', family: 4, address: '10.0.0.4', app: 'vpn', expiresInSeconds: 50 },
      { kind: 'step2', family: 4, address: '10.0.0.4', expiresInSeconds: 5 },
    ];
    const store = await open(kernel);
    expect(store.size).toBe(2);
    // A restart without its state file, then the same grants from another gateway of the cluster.
    store.recordUntil('10.0.0.4', 'vpn', 'alice', 'service', now + 50_000, 'gw-b');
    store.recordUntil('10.0.0.4', 'vpn', 'alice', 'step2', now + 5000, 'gw-b');
    expect(store.list()).toEqual([
      { ip: '10.0.0.4', app: 'vpn', user: 'alice', step: 'step2', expiresAt: now + 5000, gateway: 'gw-b' },
      { ip: '10.0.0.4', app: 'vpn', user: 'alice', step: 'service', expiresAt: now + 50_000, gateway: 'gw-b' },
    ]);
    await store.close();
  });

  it('sets a corrupt state file aside and starts from the kernel grants only', async () => {
    await mkdir(join(dir, 'state'));
    await writeFile(stateFile(), '{"version":1,"sessions":[{"ip":"10.0.0.1"');
    const { logger, lines } = capturedLogger();
    const kernel: Grant[] = [{ kind: 'step2', family: 4, address: '10.0.0.3', expiresInSeconds: 5 }];
    const store = await SessionStore.open({ stateDir: join(dir, 'state'), logger, now: clock }, kernel);
    expect(store.list()).toEqual([{ ip: '10.0.0.3', app: null, user: null, step: 'step2', expiresAt: now + 5000 }]);
    expect(store.step2Windows('10.0.0.3')).toEqual([]); // unattributed windows authorize nobody
    const files = await readdir(join(dir, 'state'));
    expect(files.some((f) => /^sessions\.json\.corrupt-2025-01-01T00-00-00-000Z$/.test(f))).toBe(true);
    expect(lines().some((l) => l.level === 40 && String(l.msg).includes('corrupt'))).toBe(true);
    await store.close();
  });

  it('reports an unwritable state directory from flush without crashing', async () => {
    await writeFile(join(dir, 'state'), 'a file where the directory should be');
    const store = await open();
    store.record('10.0.0.1', 'vpn', 'alice', 'service', 60);
    await expect(store.flush()).rejects.toThrow(/cannot write the session state file/);
    expect(store.list()).toHaveLength(1);
  });
});
