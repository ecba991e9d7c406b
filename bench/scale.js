/**
 * Scale: live grants from 0 to 100,000 through the firewall backend the daemon uses. At each
 * level: the time of one more grant, and the cost of a packet to the service port (TCP connect
 * time from a granted address) against a port with no rules (same run); kernel memory.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NET, PORTS, benchConfigYaml } from './lib/config.js';
import { REPO_ROOT } from './lib/gateway.js';
import { execAsync } from './lib/netns.js';
import { slabMb } from './lib/proc.js';
import { percentiles } from './lib/stats.js';

export const LEVELS = [0, 1_000, 10_000, 100_000];
const WORKER = fileURLToPath(new URL('./scale-worker.js', import.meta.url));
const GRANTS_PER_LEVEL = 200;
const CONNECTS = 400;

/** Connect times (ms) from the client's main address to `port`, sequential. */
async function connectTimes(gateway, port) {
  const script = `
    const net = require('node:net');
    const out = [];
    const one = () => new Promise((resolve) => {
      const t0 = process.hrtime.bigint();
      const s = net.connect({ host: '${NET.server}', port: ${port}, localAddress: '${NET.client}' });
      s.on('error', () => resolve());
      s.once('connect', () => { out.push(Number(process.hrtime.bigint() - t0) / 1e6); s.resetAndDestroy(); resolve(); });
      setTimeout(() => { s.destroy(); resolve(); }, 1000);
    });
    (async () => { for (let i = 0; i < ${CONNECTS}; i++) await one(); console.log(JSON.stringify(out)); })();`;
  const r = await execAsync(gateway.client, process.execPath, ['-e', script], 60_000);
  return JSON.parse(r.out);
}

function startWorker(gateway, backend) {
  const configPath = join(gateway.dir, `scale-${backend.firewall}.yaml`);
  const stateDir = join(gateway.dir, `scale-state-${backend.firewall}`);
  writeFileSync(
    configPath,
    benchConfigYaml({ firewall: backend.firewall, capture: backend.capture, stateDir, controlSocket: join(gateway.dir, 'scale.sock') }),
    { mode: 0o600 },
  );
  const child = gateway.gw.spawn(process.execPath, ['--expose-gc', WORKER, configPath, backend.capture, 'nft', stateDir], {
    stdio: ['pipe', 'pipe', 'inherit'],
    cwd: REPO_ROOT,
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (command) => {
    child.stdin.write(`${command}\n`);
    const reply = JSON.parse((await lines.next()).value);
    if (reply.error) throw new Error(`scale worker: ${command}: ${reply.error}`);
    return reply;
  };
  return { child, lines, ask };
}

export async function scaleBench(gateway, backend, log) {
  const worker = startWorker(gateway, backend);
  try {
    if ((await worker.lines.next()).value !== 'ready') throw new Error('scale worker did not start');
    // The client's own address is granted, so its connects to the service port pass.
    const slabBefore = slabMb();
    const levels = [];
    for (const level of LEVELS) {
      try {
        await worker.ask(`fill ${level}`);
      } catch (err) {
        // A backend that cannot hold this many grants: recorded as such, not a crash.
        levels.push({ level, error: err.message.replace(/\s+/g, ' ').slice(0, 200) });
        log(`  ${backend.name} at ${level} grants: ${err.message}`);
        break;
      }
      const grants = await worker.ask(`grant ${GRANTS_PER_LEVEL}`);
      gateway.gw.exec('sh', [
        '-c',
        backend.firewall === 'nftables'
          ? `nft add element inet knockport service_v4 '{ ${NET.client} . tcp . ${PORTS.service} timeout 3600s }'`
          : `ipset -exist add knockport-service-v4 ${NET.client},tcp:${PORTS.service} timeout 3600`,
      ]);
      const service = percentiles(await connectTimes(gateway, PORTS.service));
      const unprotected = percentiles(await connectTimes(gateway, PORTS.unprotected));
      const row = { level, grant: percentiles(grants.ms), service, unprotected, slabDeltaMb: slabMb() - slabBefore };
      if (backend.firewall === 'iptables') {
        row.ipsetMemoryMb = Number(/Size in memory: (\d+)/.exec(gateway.gw.exec('ipset', ['list', '-t', 'knockport-service-v4']))?.[1] ?? NaN) / 2 ** 20;
      }
      log(
        `  ${backend.name} at ${level} grants: grant p50 ${row.grant.p50?.toFixed(3)} ms, service connect p50 ${service.p50?.toFixed(3)} ms (no rules ${unprotected.p50?.toFixed(3)} ms)`,
      );
      levels.push(row);
    }
    const sessions = await worker.ask(`sessions ${LEVELS.at(-1)}`);
    return { levels, sessions: { recordMs: percentiles(sessions.ms), rssDeltaMb: sessions.rssDeltaMb, count: LEVELS.at(-1) } };
  } finally {
    worker.child.kill('SIGKILL');
    // Leave the gateway clean for the next backend.
    gateway.gw.tryExec('sh', [
      '-c',
      `${process.execPath} ${join(REPO_ROOT, 'bin/knock-port.js')} uninstall -c ${join(gateway.dir, `scale-${backend.firewall}.yaml`)} --iptables-variant nft >/dev/null 2>&1 || true`,
    ]);
  }
}
