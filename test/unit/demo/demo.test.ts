import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { digestKey } from '../../../src/config/key-digest.js';
import { parseConfig } from '../../../src/config/load.js';
import { DEMO_APPS, SERVICE_SECONDS, STEP2_WINDOW_SECONDS, demoConfigYaml, randomDemoSecrets } from '../../../src/demo/config.js';
import { DemoError } from '../../../src/demo/errors.js';
import { checkDemoPrerequisites } from '../../../src/demo/preflight.js';
import { shellLine } from '../../../src/demo/report.js';
import { ADDR } from '../../../src/demo/topology.js';

describe('demo config', () => {
  const secrets = randomDemoSecrets();
  const config = parseConfig(demoConfigYaml(secrets, '/tmp/kp-demo-dir'), 'demo.yaml');

  it('is a valid config (no refused example secrets) with a local and a forwarded app for one user', () => {
    expect(config.warnings ?? []).toEqual([]);
    expect(config.global.step1Path).toBe(secrets.step1Path);
    expect(config.global.step2Path).toBe(secrets.step2Path);
    expect(config.global.stateDir).toBe('/tmp/kp-demo-dir/state');
    expect(config.global.controlSocket).toBe('/tmp/kp-demo-dir/control.sock');
    const [local, forwarded] = config.apps;
    expect(local).toMatchObject({
      name: DEMO_APPS.local.name,
      port: DEMO_APPS.local.port,
      destination: { kind: 'local' },
      duration: SERVICE_SECONDS,
      step2Duration: STEP2_WINDOW_SECONDS,
    });
    expect(forwarded).toMatchObject({
      name: DEMO_APPS.forwarded.name,
      port: DEMO_APPS.forwarded.port,
      destination: { kind: 'forward', address: ADDR.lan4, port: DEMO_APPS.forwarded.destinationPort },
    });
    for (const app of config.apps) {
      expect(app.users.map((u) => u.name)).toEqual(['alice']);
      expect(app.users[0]!.step1Key.equals(digestKey(secrets.step1Key))).toBe(true);
      expect(app.users[0]!.step2Key.equals(digestKey(secrets.step2Key))).toBe(true);
    }
  });

  it('gets fresh random paths and keys every run', () => {
    const other = randomDemoSecrets();
    for (const key of ['step1Path', 'step2Path', 'step1Key', 'step2Key'] as const) expect(other[key]).not.toBe(secrets[key]);
    expect(secrets.step1Key).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('printed commands', () => {
  it('can be pasted into a shell and give the same arguments back', () => {
    const argv = ['curl', '-m', '1', '-d', "app=web&access_key=it's a key", 'http://[2001:db8:1::1]:8080/', '--cacert', '/tmp/dir/cert.pem'];
    const line = shellLine(argv);
    expect(line).toBe(`curl -m 1 -d 'app=web&access_key=it'\\''s a key' 'http://[2001:db8:1::1]:8080/' --cacert /tmp/dir/cert.pem`);
    const echoed = execFileSync('bash', ['-c', `printf '%s\\n' ${line}`], { encoding: 'utf8' });
    expect(echoed.trimEnd().split('\n')).toEqual(argv);
  });
});

describe('demo prerequisites', () => {
  const emptyDir = mkdtempSync(join(tmpdir(), 'kp-demo-path-'));
  afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

  it('refuses a non-root user, saying to use sudo', () => {
    expect(() => checkDemoPrerequisites(1000)).toThrow(DemoError);
    expect(() => checkDemoPrerequisites(1000)).toThrow(/needs root.*sudo knock-port demo/);
  });

  it('names every missing command and the Debian packages that provide them', () => {
    expect(() => checkDemoPrerequisites(0, emptyDir)).toThrow(
      'needs the commands ip, nft, curl, openssl, not found on PATH. On Debian/Ubuntu: apt-get install -y iproute2 nftables curl openssl',
    );
  });
});
