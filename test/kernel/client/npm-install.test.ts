/**
 * The client installs anywhere: the `npm pack` tarball, installed into an empty prefix with no
 * C++ compiler or Python on PATH (shims that fail stand in front of them), installs without
 * building the native addon, its `knock-port knock` opens a port of the sandbox daemon over
 * IPv4, and its `knock-port run` says it needs the addon. npm fetches the runtime dependencies
 * from its cache (or npm's registry, the first time).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, tcpOpen, type Netns } from '../../helpers/netns.js';
import { ADDR, REPO_ROOT, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('client/npm-install', kernelSkipReason(['ip', 'nft', 'openssl', 'npm']));

const STEP1_PATH = '/knock-npm-4c19e2';
const STEP2_PATH = '/step2-npm-07ab5d';
const SERVICE_PORT = 8080;
const KEYS = { http: 'npm-http-key-0123456789', https: 'npm-https-key-0123456789' };
/** What a C++ build needs; each is a shim here that notes its call and fails. */
const BUILD_TOOLS = ['g++', 'gcc', 'c++', 'cc', 'clang', 'clang++', 'make', 'python', 'python3'];
const run = promisify(execFile);

/** A TCP service on the gateway. */
function startService(gw: Netns): void {
  const script = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); }).listen(${SERVICE_PORT});`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

/** A folder of shims for the build tools, to put first on PATH; each call is noted in `log`. */
function buildToolShims(dir: string, log: string): string {
  mkdirSync(dir);
  for (const tool of BUILD_TOOLS) {
    writeFileSync(join(dir, tool), `#!/bin/sh\necho ${tool} >> ${log}\necho "${tool}: not installed" >&2\nexit 127\n`, { mode: 0o755 });
  }
  return dir;
}

/** The environment without CI's "a failed addon build fails the install" and without npm's own run settings. */
function installEnv(shims: string): NodeJS.ProcessEnv {
  const kept = Object.entries(process.env).filter(([key]) => !/^(CI|KNOCKPORT_CI|PYTHON|npm_.*)$/i.test(key));
  return { ...Object.fromEntries(kept), PATH: `${shims}:${process.env.PATH ?? ''}` };
}

describe.skipIf(skip)('the npm package, installed with no compiler, as a client', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let prefix: string;
  let shims: string;
  let toolLog: string;
  let install: { stdout: string; stderr: string; seconds: number };
  const installed = () => join(prefix, 'bin', 'knock-port');

  beforeAll(async () => {
    sandbox = createSandbox('knp');
    prefix = join(sandbox.dir, 'prefix');
    toolLog = join(sandbox.dir, 'build-tools.log');
    shims = buildToolShims(join(sandbox.dir, 'shims'), toolLog);
    const started = Date.now();
    // Packed from this checkout's dist/ (the kernel projects rebuild it first), installed while the daemon starts.
    const installing = (async () => {
      await run('npm', ['pack', '--ignore-scripts', '--pack-destination', sandbox.dir], { cwd: REPO_ROOT, env: installEnv(shims), timeout: 120_000 });
      const tarball = join(
        sandbox.dir,
        readdirSync(sandbox.dir).find((name) => /^knock-port-.*\.tgz$/.test(name))!,
      );
      const args = ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball];
      const out = await run('npm', args, { cwd: sandbox.dir, env: installEnv(shims), timeout: 240_000 });
      return { ...out, seconds: (Date.now() - started) / 1000 };
    })();
    const config = writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, step1_reply: 'reset' })}svc:
  port: ${SERVICE_PORT}
  duration: 60
  step2_https_duration: 5
  users:
    - name: alice
      access_key_http: ${KEYS.http}
      access_key_https: ${KEYS.https}
`,
    );
    startService(sandbox.gw);
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    install = await installing;
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('installs without the addon: the build tried, found no compiler, and said what the gateway commands need', () => {
    process.stderr.write(`client/npm-install: npm pack and install took ${install.seconds.toFixed(1)} s\n`);
    expect(`${install.stdout}${install.stderr}`).toContain('knock-port: the native addon did not build: knock-port knock works');
    expect(readFileSync(toolLog, 'utf8')).toMatch(/^(python3|g\+\+|make|cc)$/m);
    const packageDir = join(prefix, 'lib', 'node_modules', 'knock-port');
    expect(existsSync(join(packageDir, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(join(packageDir, 'build'))).toBe(false);
  });

  it('its knock-port knock opens the service of the sandbox daemon over IPv4', () => {
    const keyFile = writeFile(sandbox, 'alice.keys', `http_key=${KEYS.http}\nhttps_key=${KEYS.https}\n`);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
    const args = ['knock', '-4', '--url', `http://${ADDR.gwWan4}${STEP1_PATH}`, '--url', `https://${ADDR.gwWan4}${STEP2_PATH}`, '--app', 'svc'];
    const knock = sandbox.client.runCommand(installed(), [...args, '--key-file', keyFile, '--ca', sandbox.cert, '--service-port', String(SERVICE_PORT)], {
      env: installEnv(shims),
      timeoutMs: 30_000,
    });
    expect(knock.code, knock.stderr).toBe(0);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(true);
  });

  it('its knock-port run says the gateway commands need the native addon, before reading any file', () => {
    const daemonCommand = sandbox.gw.runCommand(installed(), ['run', '-c', join(sandbox.dir, 'no-such-config.yaml')], {
      env: installEnv(shims),
      timeoutMs: 30_000,
    });
    expect(daemonCommand.code).toBe(1);
    expect(daemonCommand.stderr).toContain('knock-port: the native addon (build/Release/knockport_native.node) is missing or cannot load');
    expect(daemonCommand.stderr).toContain('then run `npx node-gyp rebuild` in the package directory');
  });
});
