/**
 * The fail2ban filter we ship (packaging/fail2ban/filter.d/knock-port.conf) against the real
 * daemon's log: refused knocks at step 1 and step 2 and a failed step-2 TLS handshake, from
 * IPv4 and IPv6 clients, next to a client that knocks right. `fail2ban-regex` must find exactly
 * the refused clients' addresses, and never the good one's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { curlFrom } from '../../helpers/scenario.js';
import { ADDR, IF, REPO_ROOT, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/fail2ban', kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'fail2ban-regex']));

const FILTER = join(REPO_ROOT, 'packaging/fail2ban/filter.d/knock-port.conf');
const STEP1_PATH = '/knock-f2b-51c0';
const STEP2_PATH = '/step2-f2b-9e1d';
const HTTP_KEY = 'f2b-http-key-0123456789';
const HTTPS_KEY = 'f2b-https-key-0123456789';
const KNOCK_SECONDS = scaled(5);
const REFUSED_SECONDS = scaled(1);

/** Who does what: one address per role, so the filter's matches say which lines it read. */
const CLIENTS = {
  step1WrongKey4: '192.0.2.20',
  step1WrongKey6: '2001:db8:1::20',
  step2WrongKey4: '192.0.2.21',
  step2WrongKey6: '2001:db8:1::21',
  tlsFailure6: '2001:db8:1::22',
  good4: '192.0.2.23',
} as const;

function configYaml(sandbox: Sandbox): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    firewall_type: 'nftables',
    capture: 'nflog',
  })}tcpsvc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 20
`;
}

function url(addr: string, scheme: 'http' | 'https', path: string): string {
  return `${scheme}://${addr.includes(':') ? `[${addr}]` : addr}${path}`;
}

const gwFor = (from: string): string => (from.includes(':') ? ADDR.gwWan6 : ADDR.gwWan4);

/** The addresses fail2ban-regex found, from its verbose listing under each failregex. */
function matchedAddresses(logFile: string): Set<string> {
  const out = execFileSync('fail2ban-regex', ['-v', logFile, FILTER], { encoding: 'utf8', timeout: 60_000 });
  const found = [...out.matchAll(/^\|\s{6}(\S+)\s+\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}$/gm)].map((m) => m[1]!);
  return new Set(found);
}

describe.skipIf(skip)('fail2ban filter on the daemon log', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  beforeAll(async () => {
    sandbox = createSandbox('f2b');
    for (const addr of Object.values(CLIENTS)) {
      if (addr.includes(':')) sandbox.client.ip('addr', 'add', `${addr}/64`, 'dev', IF.clientWan, 'nodad', 'preferred_lft', '0');
      else sandbox.client.ip('addr', 'add', `${addr}/24`, 'dev', IF.clientWan);
    }
    const configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox));
    // The default level (info): what the filter reads is what an operator's daemon logs.
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--log-time', 'iso']);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  const knock = (from: string, key: string, timeoutSeconds = KNOCK_SECONDS) =>
    knockStep1({ client: sandbox.client, daemon, url: url(gwFor(from), 'http', STEP1_PATH), body: `app=tcpsvc&access_key=${key}`, from, timeoutSeconds });
  const step2 = (from: string, key: string) =>
    curlFrom(sandbox.client, from, ['-k', '-d', `app=tcpsvc&access_key=${key}`, url(gwFor(from), 'https', STEP2_PATH)], scaled(4));
  const logged = (pattern: RegExp) => waitFor(() => daemon.output.some((line) => pattern.test(line)), scaled(5000), 50);

  it('matches exactly the refused clients, IPv4 and IPv6, and not the one that knocked right', async () => {
    // Step 1 with a wrong key: refused, no step-2 window.
    for (const from of [CLIENTS.step1WrongKey4, CLIENTS.step1WrongKey6]) {
      expect(await knock(from, 'not-the-key-0123456789', REFUSED_SECONDS)).toBe(false);
      expect(await logged(new RegExp(`"ip":"${from}","port":\\d+,"step":1,"class":"refused","msg":"knock refused"`))).toBe(true);
    }
    // Step 1 right, step 2 wrong: refused at step 2.
    for (const from of [CLIENTS.step2WrongKey4, CLIENTS.step2WrongKey6]) {
      expect(await knock(from, HTTP_KEY)).toBe(true);
      expect((await step2(from, 'not-the-https-key-0123')).status).toBe('403');
      expect(await logged(new RegExp(`"ip":"${from}","port":\\d+,"step":2,"class":"refused","msg":"knock refused"`))).toBe(true);
    }
    // Step 1 right, then plain HTTP to the HTTPS port: a failed TLS handshake.
    expect(await knock(CLIENTS.tlsFailure6, HTTP_KEY)).toBe(true);
    await curlFrom(sandbox.client, CLIENTS.tlsFailure6, ['-d', 'x=1', `http://[${ADDR.gwWan6}]:443${STEP2_PATH}`], scaled(4));
    expect(await logged(new RegExp(`"ip":"${CLIENTS.tlsFailure6}","port":\\d+,.*"msg":"step 2 TLS handshake failed"`))).toBe(true);
    // Both steps right.
    expect(await knock(CLIENTS.good4, HTTP_KEY)).toBe(true);
    expect(await step2(CLIENTS.good4, HTTPS_KEY)).toEqual({ status: '200', body: 'OK\n' });

    const logFile = join(sandbox.dir, 'knock-port.log');
    writeFileSync(logFile, `${daemon.output.join('\n')}\n`);
    const matched = matchedAddresses(logFile);
    const { good4, ...refused } = CLIENTS;
    expect([...matched].sort()).toEqual(Object.values(refused).sort());
    expect(matched.has(good4)).toBe(false);
  });

  it('logs nothing at info or above that tells a right key from a wrong one, and no multi-line nft error', () => {
    const records = daemon.output.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
    const loud = records.filter((r) => typeof r.level === 'number' && r.level >= 30);
    expect(loud.length).toBeGreaterThan(0);
    for (const r of loud) expect(JSON.stringify(r)).not.toMatch(/bad-key|bad-otp|otp-required|unknown-app|no-window/);
    for (const r of records) expect(JSON.stringify(r)).not.toMatch(/\\n\s*\^/);
    expect(records.every((r) => typeof r.time === 'string' && /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(r.time))).toBe(true);
  });
});
