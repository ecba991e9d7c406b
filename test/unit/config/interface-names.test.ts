/** Interface names in the config: the original's `ppp+` and nft's `ppp*` both load; misplaced wildcards are errors. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../../../src/cli/main.js';
import { createFirewall } from '../../../src/firewall/index.js';
import { expectRefusedOnce, load, VALID } from './helpers.js';

describe('interface names', () => {
  it.each(['ppp+', 'ppp*'])('loads %s (global and per app) as the prefix wildcard ppp*', (written) => {
    const text = VALID.replace('interface_ext: eth0', `interface_ext: ${written}`).replace(
      'step2_https_duration: 5',
      `step2_https_duration: 5\n  interface_ext: "wg+"`,
    );
    const config = load(text);
    expect(config.global.interfaceExt).toBe('ppp*');
    expect(config.global.interfaceInt).toBe('eth1');
    expect(config.apps[0]!.interfaceExt).toBe('wg*');
  });

  it('refuses a wildcard that does not end the name, with key path and line', () => {
    const text = VALID.replace('interface_ext: eth0', 'interface_ext: "p*p0"');
    expectRefusedOnce(text, 'global.interface_ext', 'interface_ext', /may only end the name/);
  });

  it('refuses a bad per-app name at its own key', () => {
    const text = VALID.replace('step2_https_duration: 5', 'step2_https_duration: 5\n  interface_int: "eth0:1"');
    expectRefusedOnce(text, 'openvpn.interface_int', 'interface_int: "eth0:1"', /address label, not an interface/);
  });

  it('refuses a name longer than Linux allows', () => {
    const text = VALID.replace('interface_ext: eth0', 'interface_ext: verylongifname0+');
    expectRefusedOnce(text, 'global.interface_ext', 'interface_ext', /at most 15/);
  });

  it('loads wg0? (an interface that may come later) as written, and puts wg0 in the rules', () => {
    const config = load(VALID.replace('interface_ext: eth0', 'interface_ext: wg0?'));
    expect(config.global.interfaceExt).toBe('wg0?');
    expect(createFirewall(config, { type: 'nftables' }).render('nflog')).toContain('iifname "wg0" ');
  });

  it.each(['any', '"*"', '"+"'])('refuses interface_ext: %s (every interface), with the reason, at its line', (written) => {
    const text = VALID.replace('interface_ext: eth0', `interface_ext: ${written}`);
    expectRefusedOnce(text, 'global.interface_ext', 'interface_ext', /^matches every interface .*LAN clients would have to knock/);
  });

  it('refuses an empty interface_ext', () => {
    expectRefusedOnce(VALID.replace('interface_ext: eth0', 'interface_ext: ""'), 'global.interface_ext', 'interface_ext', /must not be empty/);
  });

  it('refuses a wildcard interface_ext that also matches interface_int, globally and per app', () => {
    expectRefusedOnce(
      VALID.replace('interface_ext: eth0', 'interface_ext: eth+'),
      'global.interface_ext',
      'interface_ext',
      /'eth\*' also matches the LAN interface 'eth1'/,
    );
    const perApp = VALID.replace('step2_https_duration: 5', 'step2_https_duration: 5\n  interface_ext: any');
    expectRefusedOnce(perApp, 'openvpn.interface_ext', 'interface_ext: any', /^matches every interface/);
  });
});

describe('knock-port check and interfaces', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-check-if-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  async function check(text: string, ...flags: string[]): Promise<string> {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, text);
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    await buildProgram()
      .exitOverride()
      .parseAsync(['node', 'knock-port', 'check', '-c', file, ...flags]);
    return stdout;
  }

  it('fails, naming the key and the name, when no interface matches an exact interface_ext', async () => {
    await expect(check(VALID.replace('interface_ext: eth0', 'interface_ext: kpabsent0'))).rejects.toThrow(
      /global\.interface_ext: no interface 'kpabsent0' on this host .*write 'kpabsent0\?' or a wildcard such as ppp\+/,
    );
  });

  it('--no-interface-check: a config written for another host passes', async () => {
    expect(await check(VALID.replace('interface_ext: eth0', 'interface_ext: kpabsent0'), '--no-interface-check')).toContain('config OK');
  });

  it.each(['kpabsent0?', 'kpabsent+'])('warns, and still succeeds, when %s matches no interface', async (name) => {
    const stdout = await check(VALID.replace('interface_ext: eth0', `interface_ext: "${name}"`));
    expect(stdout).toContain('config OK');
    expect(stdout).toMatch(
      /warnings:\n(?: {2}.*\n)* {2}gate matches no interface: interface_ext 'kpabsent[0*]\??' on this host: until an interface of that name exists/,
    );
  });

  it('says nothing when the name (or wildcard) matches an interface', async () => {
    // Every network namespace has lo.
    for (const name of ['lo', 'l+', 'lo*'])
      expect(await check(VALID.replace('interface_ext: eth0', `interface_ext: "${name}"`))).not.toContain('gate matches no interface');
  });
});
