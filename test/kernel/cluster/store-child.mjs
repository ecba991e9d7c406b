// Runs one cluster store client in its own process (`node store-child.mjs URL PREFIX`) from the
// compiled dist/: connects, publishes, claims, closes, prints one JSON line, and must then exit by itself.
import { RedisClusterStore } from '../../../dist/cluster/store.js';
import { createLogger } from '../../../dist/shared/log.js';

const [url, prefix] = process.argv.slice(2);
const store = RedisClusterStore.connect({ url, prefix, gateway: 'child', logger: createLogger('silent'), onEntry: () => {} });
const synced = await store.whenSynced(5000);
const published = await store.publishGrant('child-grant', 'child-text', Date.now() + 60_000);
const claim = await store.claimUsedCode('child-code', 'child-code-text', Date.now() + 60_000);
await store.close();
process.stdout.write(`${JSON.stringify({ synced, published, claim, state: store.state() })}\n`);
// No process.exit(): the test checks that nothing keeps the event loop alive after close().
