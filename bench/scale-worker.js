#!/usr/bin/env node
// Runs inside the gateway namespace: the firewall backend the daemon uses (libnftables
// in-process for nft, ipset for iptables), driven line by line from stdin:
//   fill N      - bulk-adds service grants until N are live (one transaction per 5,000)
//   grant N     - N grants through the backend, one at a time; replies with their latencies (ms)
//   sessions N  - N records in a session store (in memory, state file in a scratch dir)
// Each command answers one JSON line on stdout.
import { createInterface } from 'node:readline';
import { execFileSync } from 'node:child_process';
import { loadConfigFile } from '../dist/config/load.js';
import { createFirewall } from '../dist/firewall/index.js';
import { createNftRunner } from '../dist/firewall/nft-runner.js';
import { createLogger } from '../dist/shared/log.js';
import { SessionStore } from '../dist/sessions/store.js';

const [configPath, capture, variant, scratchDir] = process.argv.slice(2);
const config = loadConfigFile(configPath);
const app = config.apps[0];
const nft = createNftRunner();
const firewall = createFirewall(config, { nft, iptablesVariant: variant });
await firewall.install(capture);

const CHUNK = 5_000;
let live = 0;
/** Grant addresses in 100.64.0.0/10, never used by any host in the bench. */
const address = (i) => `100.${64 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}`;

function fill(target) {
  while (live < target) {
    const n = Math.min(CHUNK, target - live);
    const ips = Array.from({ length: n }, (_, k) => address(live + k));
    if (config.global.firewallType === 'nftables') {
      nft.run(`add element inet ${config.global.tableName} service_v4 { ${ips.map((ip) => `${ip} . tcp . ${app.port} timeout 3600s`).join(', ')} }\n`);
    } else {
      const set = `${config.global.tableName}-service-v4`;
      try {
        execFileSync('ipset', ['restore', '-exist'], {
          input: ips.map((ip) => `add ${set} ${ip},tcp:${app.port} timeout 3600\n`).join(''),
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        throw new Error(`ipset refused grant ${live + 1}: ${String(err.stderr ?? err.message).trim()}`);
      }
    }
    live += n;
  }
  return { live };
}

async function grant(count) {
  const ms = [];
  for (let i = 0; i < count; i++) {
    const ip = address(live++);
    const started = performance.now();
    await firewall.grantService(ip, app, 3600);
    ms.push(performance.now() - started);
  }
  return { ms };
}

async function sessions(count) {
  const store = await SessionStore.open({ stateDir: scratchDir, logger: createLogger('silent') }, []);
  global.gc?.();
  const before = process.memoryUsage().rss;
  const ms = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    store.record(address(i), app.name, 'key0', 'service', 3600);
    if (i % 1000 === 0) ms.push(performance.now() - started);
  }
  global.gc?.();
  const rssDeltaMb = (process.memoryUsage().rss - before) / 2 ** 20;
  await store.close();
  return { ms, rssDeltaMb };
}

const commands = { fill, grant, sessions };
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [name, arg] = line.trim().split(/\s+/);
  try {
    process.stdout.write(`${JSON.stringify(await commands[name](Number(arg)))}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err) })}\n`);
  }
}
