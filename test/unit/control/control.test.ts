import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerHealth } from '../../../src/cli/commands/health.js';
import { registerRevoke } from '../../../src/cli/commands/revoke.js';
import { registerSessions } from '../../../src/cli/commands/sessions.js';
import { sendControlRequest } from '../../../src/control/client.js';
import { ControlSocketError } from '../../../src/control/errors.js';
import { formatClusterHealth } from '../../../src/control/format.js';
import { createControlHandlers } from '../../../src/control/handlers.js';
import { healthReportSchema, type ClusterHealth, type HealthReport } from '../../../src/control/protocol.js';
import { startControlServer, type ControlServer, type ControlHandlers } from '../../../src/control/server.js';
import type { SessionRecord } from '../../../src/sessions/record.js';
import { runCli } from '../client/cli-harness.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { testConfig } from '../step2/fixtures.js';

const run = promisify(execFile);
const NOW = Date.parse('2025-01-01T00:00:00Z');

/** A daemon-side view: an in-memory session list the revoke handler edits. */
function fakeDaemon(health: HealthReport = { healthy: true, problems: [] }) {
  let records: SessionRecord[] = [
    { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', expiresAt: NOW + 42_000 },
    { ip: '2001:db8::7', app: 'ssh', user: 'alice', step: 'step2', expiresAt: NOW + 4_500 },
    { ip: '10.0.0.9', app: null, user: null, step: 'step2', expiresAt: NOW + 3_000 },
  ];
  const revokes: string[] = [];
  /** What the next reload does: applied (voiding these grants) or refused (undefined). */
  const reload: { outcome: { voided: number } | undefined } = { outcome: { voided: 1 } };
  const handlers = createControlHandlers({
    sessions: { list: () => records },
    granter: {
      revoke: async (ip, app) => {
        revokes.push(`${ip} ${app?.name ?? '*'}`);
        const before = records.length;
        records = records.filter((r) => !(r.ip === ip && (app === undefined || r.app === app.name)));
        return before - records.length;
      },
    },
    config: () => testConfig('JBSWY3DPEHPK3PXP'),
    health: () => health,
    reload: async () => reload.outcome,
    now: () => NOW,
  });
  return { handlers, revokes, reload, records: () => records };
}

describe('control socket', () => {
  let dir: string;
  let socketPath: string;
  const running: ControlServer[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-control-'));
    socketPath = join(dir, 'run', 'knock-port', 'control.sock');
  });
  afterEach(async () => {
    for (const server of running.splice(0)) await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(handlers: ControlHandlers): Promise<ControlServer> {
    const server = await startControlServer(socketPath, handlers, capturedLogger().logger);
    running.push(server);
    return server;
  }

  /** Raw lines in, raw lines out: what any client (nc -U, socat) would see. */
  function exchange(lines: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = connect(socketPath);
      let text = '';
      const expected = lines.split('\n').filter((l) => l.trim().length > 0).length;
      socket.on('data', (chunk) => {
        text += chunk.toString();
        if (text.split('\n').length - 1 >= expected) socket.end();
      });
      socket.on('close', () => resolve(text.split('\n').filter((l) => l.length > 0)));
      socket.on('error', reject);
      socket.write(lines);
      setTimeout(() => socket.destroy(), 3000);
    });
  }

  it('is root-only: socket 0600 in a 0700 directory', async () => {
    await start(fakeDaemon().handlers);
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'run', 'knock-port'))).mode & 0o777).toBe(0o700);
  });

  it('answers sessions, revoke and health, and errors on bad requests without dying', async () => {
    const daemon = fakeDaemon();
    await start(daemon.handlers);
    const answers = await exchange(
      [
        'not json',
        '{"cmd":"reboot"}',
        '{"cmd":"revoke","ip":"10.0.0.300"}',
        '{"cmd":"revoke","ip":"10.0.0.1","app":"nope"}',
        '{"cmd":"health"}',
        '{"cmd":"revoke","ip":"::ffff:10.0.0.1","app":"vpn"}',
        '{"cmd":"sessions"}',
      ].join('\n') + '\n',
    );
    const parsed = answers.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(parsed[0]).toEqual({ ok: false, error: 'request is not JSON' });
    expect(parsed[1]).toMatchObject({ ok: false, error: expect.stringMatching(/^bad request: cmd: .*commands: sessions, revoke, health/) });
    expect(parsed[2]).toMatchObject({ ok: false, error: expect.stringContaining('ip: not an IP address') });
    expect(parsed[3]).toEqual({ ok: false, error: "no app named 'nope' in test.yaml" });
    expect(parsed[4]).toEqual({ ok: true, health: { healthy: true, problems: [] } });
    expect(parsed[5]).toEqual({ ok: true, revoked: 1 });
    expect(parsed[6]).toMatchObject({
      ok: true,
      sessions: [
        { ip: '2001:db8::7', secondsLeft: 5 },
        { ip: '10.0.0.9', user: null },
      ],
    });
    expect(daemon.revokes).toEqual(['10.0.0.1 vpn']); // the mapped address reaches the daemon canonical
  });

  it('reload: answered once applied, with the grants it voided; a refused reload is an error that says the running config stays', async () => {
    const daemon = fakeDaemon();
    await start(daemon.handlers);
    expect(await exchange('{"cmd":"reload"}\n')).toEqual(['{"ok":true,"reloaded":{"voided":1}}']);
    daemon.reload.outcome = undefined;
    const [refused] = await exchange('{"cmd":"reload"}\n');
    expect(JSON.parse(refused!)).toEqual({
      ok: false,
      error: expect.stringMatching(/^the config reload failed: the daemon still runs on the previous config/),
    });
  });

  it('refuses an oversized request line', async () => {
    await start(fakeDaemon().handlers);
    const [answer] = await exchange('x'.repeat(10_000));
    expect(JSON.parse(answer!)).toEqual({ ok: false, error: 'request longer than 4096 bytes' });
  });

  it('replaces a stale socket, but not a live daemon or a regular file', async () => {
    await start(fakeDaemon().handlers);
    await expect(startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger)).rejects.toThrow(/another knock-port daemon is listening/);
    // A daemon killed with -9 leaves its socket file behind; nothing answers on it.
    await running.pop()!.close();
    const listenAndDie = `require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))`;
    await run(process.execPath, ['-e', listenAndDie, socketPath]).catch(() => undefined);
    expect((await stat(socketPath)).isSocket()).toBe(true);
    await start(fakeDaemon().handlers);
    expect(await sendControlRequest(socketPath, { cmd: 'health' })).toEqual({ ok: true, health: { healthy: true, problems: [] } });
    await running.pop()!.close();
    await writeFile(socketPath, 'not a socket');
    await expect(startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger)).rejects.toThrow(ControlSocketError);
  });
});

describe('knock-port sessions / revoke / health', () => {
  let dir: string;
  let socketPath: string;
  let server: ControlServer | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-cli-'));
    socketPath = join(dir, 'control.sock');
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('lists live grants as a table and as JSON', async () => {
    server = await startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger);
    const table = await runCli(registerSessions, ['sessions', '--socket', socketPath]);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toBe(
      [
        'IP           APP  USER            STEP     SECONDS LEFT',
        '10.0.0.1     vpn  alice           service  42',
        '2001:db8::7  ssh  alice           step2    5',
        '10.0.0.9     -    (unattributed)  step2    3',
        '',
      ].join('\n'),
    );
    const json = await runCli(registerSessions, ['sessions', '--json', '--socket', socketPath]);
    expect(JSON.parse(json.stdout)).toHaveLength(3);
  });

  it('revokes an IP (optionally one app) and reports daemon errors', async () => {
    const daemon = fakeDaemon();
    server = await startControlServer(socketPath, daemon.handlers, capturedLogger().logger);
    const one = await runCli(registerRevoke, ['revoke', '10.0.0.1', '--app', 'vpn', '--socket', socketPath]);
    expect([one.exitCode, one.stdout]).toEqual([0, 'revoked 10.0.0.1 (app vpn): 1 grant(s) closed\n']);
    const unknown = await runCli(registerRevoke, ['revoke', '10.0.0.1', '--app', 'nope', '--socket', socketPath]);
    expect([unknown.exitCode, unknown.stderr]).toEqual([1, "knock-port: no app named 'nope' in test.yaml\n"]);
    const bad = await runCli(registerRevoke, ['revoke', 'gateway', '--socket', socketPath]);
    expect(bad.exitCode).toBe(2); // a usage error: not an IP address
    expect(bad.stderr).toMatch(/^knock-port: command-argument value 'gateway' is invalid for argument 'ip'\. expected an IPv4 or IPv6 address/);
    expect(daemon.revokes).toEqual(['10.0.0.1 vpn']);
  });

  it('warns when a clustered revoke closed grants here but is not yet shared', async () => {
    for (const shared of [false, true]) {
      const handlers = createControlHandlers({
        sessions: { list: () => [] },
        granter: { revoke: async () => ({ closed: 2, shared }) },
        config: () => testConfig('JBSWY3DPEHPK3PXP'),
        health: () => ({ healthy: true, problems: [] }),
        reload: async () => ({ voided: 0 }),
        now: () => NOW,
      });
      server = await startControlServer(socketPath, handlers, capturedLogger().logger);
      const out = await runCli(registerRevoke, ['revoke', '10.0.0.1', '--socket', socketPath]);
      expect([out.exitCode, out.stdout]).toEqual([0, 'revoked 10.0.0.1: 2 grant(s) closed\n']);
      if (shared) expect(out.stderr).toBe('');
      else expect(out.stderr).toMatch(/^warning: closed here, not yet shared: the cluster store is unreachable/);
      await server.close();
    }
  });

  it('health: exit 0 healthy, 1 unhealthy or unreachable, with a message', async () => {
    server = await startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger);
    expect(await runCli(registerHealth, ['health', '--socket', socketPath])).toMatchObject({ exitCode: 0, stdout: 'healthy\n' });
    await server.close();
    server = await startControlServer(socketPath, fakeDaemon({ healthy: false, problems: ['capture stopped'] }).handlers, capturedLogger().logger);
    expect(await runCli(registerHealth, ['health', '--socket', socketPath])).toMatchObject({ exitCode: 1, stderr: 'unhealthy: capture stopped\n' });
    await server.close();
    server = undefined;
    const gone = await runCli(registerHealth, ['health', '--socket', socketPath]);
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toMatch(/no control socket at .*is knock-port running/);
  });

  it('health --json: the report as one JSON object, with the same exit codes', async () => {
    server = await startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger);
    const healthy = await runCli(registerHealth, ['health', '--json', '--socket', socketPath]);
    expect(healthy.exitCode).toBe(0);
    expect(JSON.parse(healthy.stdout)).toEqual({ healthy: true, problems: [] });
    await server.close();
    server = await startControlServer(socketPath, fakeDaemon({ healthy: false, problems: ['capture stopped'] }).handlers, capturedLogger().logger);
    const unhealthy = await runCli(registerHealth, ['health', '--json', '--socket', socketPath]);
    expect([unhealthy.exitCode, unhealthy.stderr]).toEqual([1, '']);
    expect(JSON.parse(unhealthy.stdout)).toEqual({ healthy: false, problems: ['capture stopped'] });
  });

  it('health, clustered: the cluster line after the verdict, and the cluster object in --json', async () => {
    const cluster: ClusterHealth = { gateway: 'gw-a', connected: true, synced: true, lagMs: 12.4, backlog: 0, reconnects: 1 };
    server = await startControlServer(socketPath, fakeDaemon({ healthy: true, problems: [], cluster }).handlers, capturedLogger().logger);
    expect(await runCli(registerHealth, ['health', '--socket', socketPath])).toMatchObject({
      exitCode: 0,
      stdout: 'healthy\ncluster: gateway gw-a, store connected, in sync, lag 12 ms, 0 waiting, 1 reconnects\n',
    });
    const json = await runCli(registerHealth, ['health', '--json', '--socket', socketPath]);
    expect(json.exitCode).toBe(0);
    const report: unknown = JSON.parse(json.stdout);
    expect(report).toEqual({ healthy: true, problems: [], cluster });
    expect(healthReportSchema.parse(report)).toEqual(report);
    await server.close();
    const alone: ClusterHealth = { gateway: 'gw-a', connected: false, synced: false, backlog: 0, reconnects: 1 };
    server = await startControlServer(
      socketPath,
      fakeDaemon({ healthy: false, problems: ['cluster store unreachable'], cluster: alone }).handlers,
      capturedLogger().logger,
    );
    expect(await runCli(registerHealth, ['health', '--socket', socketPath])).toMatchObject({
      exitCode: 1,
      stderr: 'unhealthy: cluster store unreachable\n',
      stdout: 'cluster: gateway gw-a, store unreachable (working alone), 0 waiting, 1 reconnects\n',
    });
  });

  it('takes the socket path from -c when --socket is not given', async () => {
    server = await startControlServer(socketPath, fakeDaemon().handlers, capturedLogger().logger);
    const configFile = join(dir, 'config.yaml');
    await writeFile(
      configFile,
      [
        'global:',
        '  http_post_path: /Kp7x-Q2m.9a',
        '  https_post_path: /zR4_tW8~vN1',
        '  step1_2_rate_limit_per_minute: 120',
        '  interface_ext: eth0',
        '  interface_int: eth1',
        `  control_socket: ${socketPath}`,
        'vpn:',
        '  port: 1194',
        '  access_key_http: [9f2c4e71b0a85d36]',
        '  access_key_https: [4b7e19d2f06ca385]',
        '  destination: local',
        '  protocol: udp',
        '  duration: 60',
        '  step2_https_duration: 5',
        '',
      ].join('\n'),
    );
    expect(await runCli(registerHealth, ['health', '-c', configFile])).toMatchObject({ exitCode: 0, stdout: 'healthy\n' });
    await writeFile(configFile, 'not: [valid');
    const invalid = await runCli(registerHealth, ['health', '-c', configFile]);
    expect(invalid.exitCode).toBe(1);
    expect(invalid.stderr).toContain(configFile);
  });
});

describe('formatClusterHealth', () => {
  const base: ClusterHealth = { gateway: 'gw-b', connected: true, synced: true, backlog: 0, reconnects: 0 };

  it('connected and in sync, with the last lag rounded to a millisecond', () => {
    expect(formatClusterHealth({ ...base, lagMs: 3.6, reconnects: 2 })).toBe(
      'cluster: gateway gw-b, store connected, in sync, lag 4 ms, 0 waiting, 2 reconnects\n',
    );
  });

  it('connected and still applying a snapshot: catching up, with what waits', () => {
    expect(formatClusterHealth({ ...base, synced: false, backlog: 95_000 })).toBe(
      'cluster: gateway gw-b, store connected, catching up, 95000 waiting, 0 reconnects\n',
    );
  });

  it('store unreachable: working alone', () => {
    expect(formatClusterHealth({ ...base, connected: false, synced: false, reconnects: 5 })).toBe(
      'cluster: gateway gw-b, store unreachable (working alone), 0 waiting, 5 reconnects\n',
    );
  });
});
