/**
 * `knock-port init` and `knock-port user add` (the real CLI, in the gateway namespace), then the
 * real daemon with exactly that config: the printed client bundles knock from the client
 * namespace, alice's curl lines over IPv4 and bob's `knock-port knock` line over IPv6; the
 * phone recipes' requests, replayed by curl exactly as printed; then `user remove alice`
 * closes her grant and her keys, and leaves bob's grant open.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, tcpOpen, waitFor, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, IF, createSandbox, startDaemon, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { sendControlRequest } from '../../../src/control/client.js';
import { REFUSED_KNOCK_MESSAGE } from '../../../src/shared/knock-refusal.js';

const skip = announceSkip('client/provision', kernelSkipReason(['ip', 'nft', 'openssl', 'curl']));

const SERVICE_PORT = 8080;

/** A dual-stack TCP service on the gateway. */
function startService(gw: Netns): void {
  const script = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); })
    .listen({ port: ${SERVICE_PORT}, host: '::', ipv6Only: false });`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

/** What a user copies from the bundle: the key file, the curl lines, the knock line and the certificate. */
function readBundle(text: string): { keyFile: string; curl: string[]; knock: string; certificate: string } {
  const lines = text.split('\n');
  const keyStart = lines.findIndex((line) => line.startsWith('Key file for knock-port knock'));
  const unixStart = lines.findIndex((line) => line.startsWith('Linux, macOS'));
  const certStart = lines.findIndex((line) => line === '-----BEGIN CERTIFICATE-----');
  const certEnd = lines.findIndex((line) => line === '-----END CERTIFICATE-----');
  return {
    keyFile: `${lines
      .slice(keyStart + 1)
      .filter((line) => /^ {2}(http|https)_key=/.test(line))
      .map((line) => line.trim())
      .join('\n')}\n`,
    curl: lines.slice(unixStart + 1, unixStart + 3).map((line) => line.trim()),
    knock: lines.find((line) => line.startsWith('  knock-port knock '))!.trim(),
    certificate: `${lines.slice(certStart, certEnd + 1).join('\n')}\n`,
  };
}

/** One request of a phone recipe, as printed: what the phone app is told to send. */
interface PhoneRequest {
  method: string;
  url: string;
  contentType: string;
  body: string;
  /** How the app sends the body: as the text itself (iOS: File = Text; Android: Custom Text). */
  bodyAs: string;
}

/** `Key: value; Key: value` as a record. */
function fieldsOf(line: string): Record<string, string> {
  return Object.fromEntries(line.split('; ').map((field) => [field.slice(0, field.indexOf(': ')), field.slice(field.indexOf(': ') + 2)]));
}

/** The requests of the iOS Shortcuts and the Android HTTP Shortcuts recipes, parsed from the bundle's text. */
function phoneRequests(text: string): { ios: PhoneRequest[]; android: PhoneRequest[] } {
  const lines = text.split('\n');
  const ios: PhoneRequest[] = [];
  const android: PhoneRequest[] = [];
  for (const [i, line] of lines.entries()) {
    const iosText = /^ {2}"knock \d": (?:.* then )?Text: (.*)$/.exec(line);
    if (iosText) {
      const fields = fieldsOf(lines[i + 1]!.trim().replace(/^Get Contents of URL: /, 'URL: '));
      const contentType = /^Content-Type = (.*)$/.exec(fields.Headers ?? '')?.[1] ?? '';
      ios.push({ method: fields.Method!, url: fields.URL!, contentType, body: iosText[1]!, bodyAs: fields['Request Body']! });
      continue;
    }
    const androidLine = /^ {2}"knock \d": (Method: .*)$/.exec(line);
    if (androidLine) {
      const fields = fieldsOf(androidLine[1]!);
      android.push({ method: fields.Method!, url: fields.URL!, contentType: fields['Content Type']!, body: fields.Body!, bodyAs: fields['Request Body']! });
    }
  }
  return { ios, android };
}

/** A request replayed by curl as printed: that method, URL, Content-Type and body, nothing else of ours. */
function curlLine(request: PhoneRequest): string {
  const trust = request.url.startsWith('https:') ? ' --cacert gateway.pem' : '';
  return `curl -sS -m 3${trust} -X ${request.method} -H 'Content-Type: ${request.contentType}' --data-binary '${request.body}' '${request.url}'`;
}

describe.skipIf(skip)('init and user add, then the real daemon with that config', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let config: string;
  let clientDir: string;
  let aliceBundle: ReturnType<typeof readBundle>;
  let aliceText: string;
  /** The knock-port CLI in the gateway namespace, as the operator runs it there. */
  const operator = (args: string[]) => sandbox.gw.runCommand(process.execPath, [CLI, ...args, '-c', config], { timeoutMs: 30_000 });
  /** `cd CLIENT_DIR && LINE` in the client namespace, as the user pastes it. */
  const paste = (line: string) => sandbox.client.runCommand('sh', ['-c', `cd ${clientDir} && ${line}`], { timeoutMs: 30_000 });

  beforeAll(async () => {
    sandbox = createSandbox('kpv');
    config = join(sandbox.dir, 'etc', 'config.yaml');
    clientDir = join(sandbox.dir, 'client');
    mkdirSync(clientDir);
    startService(sandbox.gw);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('init writes a config that check accepts, and a drop-in adapts it to the sandbox', () => {
    const init = sandbox.gw.runCommand(process.execPath, [CLI, 'init', '-c', config, '--interface', IF.gwWan, '--app', 'svc', '--port', String(SERVICE_PORT)], {
      timeoutMs: 30_000,
    });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toContain('knock-port check passes');
    expect(init.stdout).toContain('Next steps:');
    // The sandbox's own state directory and control socket, and a RST for every step-1 request so
    // that curl's step 1 ends at once instead of after its 3 s: a drop-in, as an operator adds one.
    mkdirSync(join(sandbox.dir, 'etc', 'conf.d'));
    writeFileSync(
      join(sandbox.dir, 'etc', 'conf.d', '50-sandbox.yaml'),
      `global:\n  state_dir: ${join(sandbox.dir, 'state')}\n  control_socket: ${join(sandbox.dir, 'control.sock')}\n  step1_reply: reset\n`,
    );
    const check = sandbox.gw.runCommand(process.execPath, [CLI, 'check', '-c', config], { timeoutMs: 30_000 });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain('with conf.d/50-sandbox.yaml, users.d/admin.yaml');
  });

  it("alice's printed curl lines open the service over IPv4; bob's knock-port knock line over IPv6", async () => {
    const add = (name: string, host: string) =>
      sandbox.gw.runCommand(process.execPath, [CLI, 'user', 'add', name, '--app', 'svc', '--host', host, '-c', config], { timeoutMs: 30_000 });
    const alice = add('alice', ADDR.gwWan4);
    const bob = add('bob', ADDR.gwWan6);
    expect(alice.code, alice.stderr).toBe(0);
    expect(bob.code, bob.stderr).toBe(0);
    aliceText = alice.stdout;
    aliceBundle = readBundle(alice.stdout);
    const bobBundle = readBundle(bob.stdout);
    writeFileSync(join(clientDir, 'gateway.pem'), aliceBundle.certificate);
    writeFileSync(join(clientDir, 'bob.keys'), bobBundle.keyFile, { mode: 0o600 });

    daemon = startDaemon(sandbox, ['-c', config]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(false);

    const [step1, step2] = aliceBundle.curl;
    expect(step1).toMatch(/^curl -m 3 -d 'app=svc&access_key=[0-9a-f]{32}' http:\/\/192\.0\.2\.1\//);
    paste(step1!);
    const answer = paste(step2!);
    expect(answer.stdout, answer.stderr).toMatch(/^OK\s*$/);
    expect(await waitFor(() => tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500), 5_000)).toBe(true);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(false);

    const knock = paste(
      bobBundle.knock.replace(/^knock-port /, `${process.execPath} ${CLI} `).replace('--key-file bob.keys', '--key-file bob.keys --service-port 8080'),
    );
    expect(knock.code, knock.stderr).toBe(0);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(true);
  });

  it("each phone recipe's requests, sent exactly as printed, open the service over IPv4", async () => {
    const recipes = phoneRequests(aliceText);
    for (const [phone, requests] of Object.entries(recipes)) {
      expect(
        requests.map((request) => [request.method, request.contentType]),
        phone,
      ).toEqual([
        ['POST', 'application/x-www-form-urlencoded'],
        ['POST', 'application/x-www-form-urlencoded'],
      ]);
      expect(requests.map((request) => request.bodyAs)).toEqual(phone === 'ios' ? ['File = Text', 'File = Text'] : ['Custom Text', 'Custom Text']);
      // From a closed port: the grant alice's curl lines (or the previous recipe) opened goes first.
      expect(await sendControlRequest(join(sandbox.dir, 'control.sock'), { cmd: 'revoke', ip: ADDR.client4 })).toMatchObject({ ok: true });
      expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
      paste(curlLine(requests[0]!));
      const answer = paste(curlLine(requests[1]!));
      expect(answer.stdout, `${phone}: ${answer.stderr}`).toMatch(/^OK\s*$/);
      expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500), phone).toBe(true);
    }
  });

  it("user remove alice: her open grant closes and her keys no longer knock; bob's grant stays open", async () => {
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(true);
    const removed = operator(['user', 'remove', 'alice']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stderr).toMatch(/^removed alice from app svc \(deleted .*users\.d\/alice\.yaml\)$/m);
    expect(removed.stdout).toBe("the daemon reloaded the config: alice's keys no longer knock; 1 live grant(s) revoked\n");
    // The reload answered once the grant was revoked: closed now, no waiting.
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(true);
    // Her step 1 again: the daemon refuses it (its info line for fail2ban), and nothing opens.
    const logged = daemon.output.length;
    paste(aliceBundle.curl[0]!);
    const refusal = (line: string) => line.includes(REFUSED_KNOCK_MESSAGE) && line.includes(`"ip":"${ADDR.client4}"`) && line.includes('"class":"refused"');
    expect(await waitFor(() => daemon.output.slice(logged).some(refusal), 5_000)).toBe(true);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
  });

  it('user remove bob while the daemon is down: the restart closes the grant it restores for him', async () => {
    await daemon.stop('SIGKILL');
    // The kernel keeps the grant of a killed daemon (and the state file has it).
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(true);
    const removed = operator(['user', 'remove', 'bob']);
    expect(removed.stderr).toMatch(/^removed bob from app svc/m);
    daemon = startDaemon(sandbox, ['-c', config]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    expect(daemon.output.some((line) => line.includes('restored grant of a user the config no longer has') && line.includes(ADDR.client6))).toBe(true);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(false);
  });
});
