/** `uninstall` refuses while a daemon holds the control socket: its self-heal would undo it. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { probeDaemon, registerUninstall } from '../../../src/cli/commands/uninstall.js';
import { runCli } from '../client/cli-harness.js';
import { VALID } from '../config/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-uninstall-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function listen(path: string): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer((socket) => socket.end());
    server.listen(path, () => resolve(server));
  });
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('daemon detection', () => {
  it('running while something accepts on the socket; stopped when there is none or a stale one', async () => {
    const path = join(dir, 'probe.sock');
    expect(await probeDaemon(path)).toEqual({ state: 'stopped' });
    const server = await listen(path);
    expect(await probeDaemon(path)).toEqual({ state: 'running' });
    await close(server);

    // A socket file left behind by a daemon that died: it exists, but nothing accepts.
    const stale = join(dir, 'stale.sock');
    execFileSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    expect(statSync(stale).isSocket()).toBe(true);
    expect(await probeDaemon(stale)).toEqual({ state: 'stopped' });
  });

  it('refuses to uninstall while the daemon runs, before touching the firewall', async () => {
    const socket = join(dir, 'control.sock');
    const config = join(dir, 'config.yaml');
    writeFileSync(config, VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  control_socket: ${socket}\n`));
    const server = await listen(socket);
    try {
      const run = await runCli((program) => registerUninstall(program), ['uninstall', '-c', config]);
      expect(run.exitCode).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        /knock-port is running \(its control socket .*control\.sock accepts connections\).*Stop it first \(systemctl stop knock-port\)/,
      );
    } finally {
      await close(server);
    }
  });
});
