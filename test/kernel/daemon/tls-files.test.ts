/**
 * A bad certificate or key never locks the operator out, on this kernel, in namespaces this test
 * creates: `run` with the files swapped, or with another certificate's key (given as flags or as
 * global.tls_cert/tls_key), exits 10 naming the file, and no rule is in the gateway's kernel;
 * `check` says the same without flags. A SIGHUP after a renewal serves the new certificate to
 * the next client (its serial, read with openssl s_client from the client namespace after a
 * knock); a broken renewal keeps the previous one serving, and `health` and the metrics say so.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { startServices } from '../../helpers/scenario.js';
import { selfSigned, serialOf, type PemPair } from '../../helpers/tls-certs.js';

const skip = announceSkip('daemon/tls-files', kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/knock-tls-5c81e2';
const STEP2_PATH = '/step2-tls-09d4af';
const HTTP_KEY = 'tls-http-key-0123456789';
const HTTPS_KEY = 'tls-https-key-0123456789';
const METRICS = '127.0.0.1:9471';

function configYaml(sandbox: Sandbox, tls: Record<string, string> = {}): string {
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, metrics_listen: METRICS, ...tls })}svc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  duration: 60
  step2_https_duration: 60
`;
}

/** Whether knock-port's table is in the gateway's kernel. */
const tableInstalled = (gw: Netns): boolean => gw.tryExec('nft', ['list', 'table', 'inet', 'knockport']).ok;

/** Step 1 from the client (never answered): opens the HTTPS port to it for the window. */
function knock(sandbox: Sandbox): void {
  curl(sandbox.client, ['-d', `app=svc&access_key=${HTTP_KEY}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 1);
}

/** The serial of the certificate the gateway's step 2 serves to a new connection from the client. */
function servedSerial(sandbox: Sandbox): string {
  const session = sandbox.client.runCommand('openssl', ['s_client', '-connect', `${ADDR.gwWan4}:443`], { timeoutMs: 10_000 });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(session.stdout)?.[0];
  if (!pem) throw new Error(`no certificate served: ${session.stderr}`);
  return sandbox.client
    .exec('openssl', ['x509', '-noout', '-serial'], pem)
    .trim()
    .replace(/^serial=/, '')
    .toUpperCase();
}

describe.skipIf(skip)('TLS files: refused before any rule, renewed on SIGHUP', () => {
  let sandbox: Sandbox;
  let first: PemPair;
  let renewed: PemPair;
  let stranger: PemPair;

  beforeAll(async () => {
    sandbox = createSandbox('tlf');
    first = selfSigned(sandbox.dir, 'first');
    renewed = selfSigned(sandbox.dir, 'renewed');
    stranger = selfSigned(sandbox.dir, 'stranger');
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
  });

  afterAll(() => sandbox?.destroy());

  /** `knock-port COMMAND ARGS` in the gateway namespace, to its end (bounded). */
  const cli = (args: string[]) => sandbox.gw.runCommand(process.execPath, [CLI, ...args], { timeoutMs: 30_000 });

  describe.each([
    { mistake: 'the files swapped', cert: () => first.key, key: () => first.cert, message: /swapped\?/ },
    { mistake: "another certificate's key", cert: () => first.cert, key: () => stranger.key, message: /does not belong to the certificate in/ },
  ])('$mistake', ({ cert, key, message }) => {
    it('run exits 10 naming the file, and installs no rule', () => {
      const config = writeFile(sandbox, 'flags.yaml', configYaml(sandbox));
      const result = cli(['run', '-c', config, '--cert', cert(), '--key', key()]);
      expect(result.code, result.stderr).toBe(10);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toContain(key());
      expect(tableInstalled(sandbox.gw)).toBe(false);
    });

    it('given as global.tls_cert/tls_key: check (no flags) and run both exit 10, no rule', () => {
      const config = writeFile(sandbox, 'keys.yaml', configYaml(sandbox, { tls_cert: cert(), tls_key: key() }));
      const checked = cli(['check', '-c', config]);
      expect(checked.code, checked.stderr).toBe(10);
      expect(checked.stderr).toMatch(message);
      expect(checked.stderr).toMatch(/global\.tls_(cert|key)/);
      const result = cli(['run', '-c', config]);
      expect(result.code, result.stderr).toBe(10);
      expect(tableInstalled(sandbox.gw)).toBe(false);
    });
  });

  describe('a running daemon', () => {
    let daemon: Daemon;
    const live = () => ({ cert: join(sandbox.dir, 'live-cert.pem'), key: join(sandbox.dir, 'live-key.pem') });
    /** Puts a pair where the config points, as a certbot deploy hook copies a renewal. */
    const install = (cert: string, key: string) => {
      copyFileSync(cert, live().cert);
      copyFileSync(key, live().key);
    };
    const health = () => {
      const result = cli(['health', '--json', '--socket', join(sandbox.dir, 'control.sock')]);
      return { code: result.code, report: JSON.parse(result.stdout) as { healthy: boolean; problems: string[]; tls: { serial: string; daysLeft: number } } };
    };
    const expirySeconds = () => Number(/^knockport_tls_certificate_expiry_seconds (\S+)$/m.exec(curl(sandbox.gw, [`http://${METRICS}/metrics`]).body)?.[1]);
    const notAfterSeconds = (cert: string) =>
      Date.parse(
        sandbox.gw
          .exec('openssl', ['x509', '-noout', '-enddate', '-in', cert])
          .trim()
          .replace(/^notAfter=/, ''),
      ) / 1000;

    beforeAll(async () => {
      install(first.cert, first.key);
      const config = writeFile(sandbox, 'live.yaml', configYaml(sandbox, { tls_cert: live().cert, tls_key: live().key }));
      daemon = startDaemon(sandbox, ['-c', config]);
      if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    });

    afterAll(async () => {
      await daemon?.stop('SIGKILL');
    });

    it('serves the certificate it started with, and reports its expiry', () => {
      knock(sandbox);
      expect(servedSerial(sandbox)).toBe(serialOf(first.cert));
      const { code, report } = health();
      expect(code).toBe(0);
      expect(report.tls.serial).toBe(serialOf(first.cert));
      expect(report.tls.daysLeft).toBeGreaterThanOrEqual(58);
      expect(expirySeconds()).toBe(notAfterSeconds(first.cert));
    });

    it('a SIGHUP after a renewal serves the new certificate to new connections', async () => {
      install(renewed.cert, renewed.key);
      daemon.proc.kill('SIGHUP');
      expect(await daemon.waitForLog(/TLS certificate reloaded: new connections get it/, 10_000)).toBe(true);
      knock(sandbox);
      expect(servedSerial(sandbox)).toBe(serialOf(renewed.cert));
      expect(health().report.tls.serial).toBe(serialOf(renewed.cert));
      expect(expirySeconds()).toBe(notAfterSeconds(renewed.cert));
    });

    it('a broken renewal (a key of another certificate) keeps the previous one serving; log, health and metrics say so', async () => {
      install(first.cert, stranger.key);
      daemon.proc.kill('SIGHUP');
      expect(await daemon.waitForLog(/TLS certificate reload refused; still serving the previous certificate/, 10_000)).toBe(true);
      knock(sandbox);
      expect(servedSerial(sandbox)).toBe(serialOf(renewed.cert));
      const { code, report } = health();
      expect(code).toBe(1);
      expect(report.healthy).toBe(false);
      expect(report.problems).toEqual([
        expect.stringMatching(/^TLS: the certificate and key read at the last reload were refused \(the key in .* does not belong/),
      ]);
      expect(curl(sandbox.gw, [`http://${METRICS}/metrics`]).body).toMatch(/^knockport_tls_reload_refused 1$/m);
      // The step-2 service still works on the old certificate.
      expect(curl(sandbox.client, ['-k', '-d', `app=svc&access_key=${HTTPS_KEY}`, `https://${ADDR.gwWan4}${STEP2_PATH}`]).status).toBe('200');
    });
  });
});
