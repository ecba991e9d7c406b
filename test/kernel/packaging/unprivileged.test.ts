/**
 * The systemd unit runs the daemon as a dedicated user with only the capabilities in its
 * AmbientCapabilities= line. Here the real daemon runs exactly so (user nobody, those
 * capabilities ambient and bounding, nothing else) in the gateway namespace, and a client
 * knocks its way in.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnDaemon } from '../../../src/demo/daemon-process.js';
import { announceSkip, kernelSkipReason, tcpOpen, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, IF, createSandbox, curl, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('packaging/unprivileged', kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'setpriv']));

const UNIT = readFileSync(new URL('../../../packaging/systemd/knock-port.service', import.meta.url), 'utf8');
/** `CAP_NET_ADMIN CAP_NET_RAW ...` from the unit, as setpriv's `+net_admin,+net_raw,...`. */
const unitCapabilities = /^AmbientCapabilities=(.+)$/m
  .exec(UNIT)![1]!
  .trim()
  .split(/\s+/)
  .map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`)
  .join(',');
const NOBODY = 65534;

describe.skipIf(skip)("the daemon as an unprivileged user with only the unit's capabilities", () => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  beforeAll(async () => {
    sandbox = createSandbox('unp');
    chmodSync(sandbox.dir, 0o755);
    for (const writable of ['state', 'run']) {
      mkdirSync(join(sandbox.dir, writable));
      chownSync(join(sandbox.dir, writable), NOBODY, NOBODY);
    }
    chownSync(sandbox.key, NOBODY, NOBODY);
    const config = writeFile(
      sandbox,
      'config.yaml',
      `global:
  http_post_path: /knock-unpriv-31c9
  https_post_path: /step2-unpriv-8d02
  interface_ext: ${IF.gwWan}
  state_dir: ${join(sandbox.dir, 'state')}
  control_socket: ${join(sandbox.dir, 'run', 'control.sock')}
ssh:
  port: 2222
  duration: 30
  step2_https_duration: 5
  access_key_http: [unpriv-http-key-0123456789]
  access_key_https: [unpriv-https-key-0123456789]
`,
    );
    chownSync(config, NOBODY, NOBODY);
    startService(sandbox.gw);
    const caps = unitCapabilities;
    daemon = spawnDaemon(
      sandbox.gw,
      ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key],
      ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', `--inh-caps=-all,${caps}`, `--ambient-caps=${caps}`, `--bounding-set=-all,${caps}`],
    );
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('runs as nobody, installs its rules, and opens the service after both steps', () => {
    expect(sandbox.gw.exec('ps', ['-o', 'user=', '-p', String(daemon.proc.pid)]).trim()).toBe('nobody');
    expect(sandbox.gw.exec('nft', ['list', 'tables'])).toContain('inet knockport');
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, 2222, 500)).toBe(false);
    expect(curl(sandbox.client, ['-d', 'app=ssh&access_key=unpriv-http-key-0123456789', `http://${ADDR.gwWan4}/knock-unpriv-31c9`], 1).status).toBe('000');
    expect(
      curl(sandbox.client, ['--cacert', sandbox.cert, '-d', 'app=ssh&access_key=unpriv-https-key-0123456789', `https://${ADDR.gwWan4}/step2-unpriv-8d02`]),
    ).toEqual({ status: '200', body: 'OK\n' });
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, 2222)).toBe(true);
  });

  it('answers health and sessions on its control socket', () => {
    const socket = join(sandbox.dir, 'run', 'control.sock');
    expect(sandbox.gw.exec(process.execPath, [CLI, 'health', '--socket', socket])).toBe('healthy\n');
    expect(sandbox.gw.exec(process.execPath, [CLI, 'sessions', '--socket', socket])).toMatch(/192\.0\.2\.2\s+ssh\s+key0\s+service/);
  });
});

function startService(gw: Netns): void {
  const script = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('hi\\n'); }).listen(2222, '0.0.0.0');`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}
