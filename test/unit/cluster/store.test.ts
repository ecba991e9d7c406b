// The cluster store with no server listening: option checks, fast failures, counters and close().
import { afterEach, describe, expect, it } from 'vitest';
import { RedisClusterStore } from '../../../src/cluster/store.js';
import { createLogger } from '../../../src/shared/log.js';
import { freePort } from '../../helpers/ports.js';

const logger = createLogger('silent');
const stores: RedisClusterStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

describe('RedisClusterStore without a server', () => {
  const base = { prefix: 'kp:', gateway: 'gw', logger, onEntry: () => {} };

  it('refuses incomplete options', () => {
    expect(() => RedisClusterStore.connect({ ...base })).toThrow(/url or sentinels/);
    expect(() => RedisClusterStore.connect({ ...base, sentinels: [{ host: '127.0.0.1', port: 26379 }] })).toThrow(/sentinelName/);
    expect(() => RedisClusterStore.connect({ ...base, url: 'redis://127.0.0.1:1', prefix: '' })).toThrow(/prefix/);
  });

  it('returns at once, fails fast and counts it, and closes cleanly', async () => {
    const states: boolean[] = [];
    const store = RedisClusterStore.connect({
      ...base,
      url: `redis://127.0.0.1:${await freePort()}`,
      onState: (s) => states.push(s.connected),
      timeouts: { connectMs: 200, commandMs: 200, backoff: { baseMs: 20, capMs: 100 } },
    });
    stores.push(store);
    expect(await store.whenSynced(300)).toBe(false);
    const t0 = Date.now();
    expect(await store.publishGrant('g', 't', Date.now() + 10_000)).toBe(false);
    expect(await store.publishRevoke('r', 't', 10_000)).toBe(false);
    expect(await store.claimUsedCode('c', 't', Date.now() + 10_000)).toBe('unavailable');
    expect(Date.now() - t0).toBeLessThan(100);
    await expect(store.snapshot()).rejects.toThrow(/not connected/);
    const state = store.state();
    expect(state).toMatchObject({ connected: false, synced: false, reconnects: 0, published: 0, publishFailures: 3, received: 0 });
    expect(state.lastError).toMatch(/ECONNREFUSED/);
    await store.close();
    expect(await store.publishGrant('g', 't', Date.now() + 10_000)).toBe(false);
    expect(await store.whenSynced(1000)).toBe(false);
    expect(states.every((c) => !c)).toBe(true);
  });
});
