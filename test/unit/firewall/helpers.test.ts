import { describe, expect, it } from 'vitest';
import { chooseCapture, createFirewall } from '../../../src/firewall/index.js';
import { parseIpsetSave } from '../../../src/firewall/iptables/grant-sets.js';
import { parseSetElements } from '../../../src/firewall/nftables/grant-sets.js';
import { InvalidGrantError } from '../../../src/firewall/plan.js';
import type { NftRunner } from '../../../src/firewall/nft-runner.js';
import { fixtureConfig } from './fixture.js';

/** Records the scripts a backend would run (the kernel path is covered by test/kernel/firewall). */
class RecordingNft implements NftRunner {
  readonly kind = 'cli' as const;
  readonly scripts: string[] = [];
  run(script: string): string {
    this.scripts.push(script);
    return '{"nftables": []}';
  }
}

describe('grant validation (before anything reaches the kernel)', () => {
  it('refuses an IPv6 grant when global.ipv6 is off, and garbage addresses', async () => {
    const nft = new RecordingNft();
    const fw = createFirewall(fixtureConfig({ ipv6: false }), { nft });
    await expect(fw.grantStep2('2001:db8::1', 10)).rejects.toThrow(/global.ipv6 is off/);
    await expect(fw.grantStep2('10.0.0.1; flush ruleset', 10)).rejects.toThrow(InvalidGrantError);
    expect(nft.scripts).toEqual([]);
  });

  it('refuses a grant that could never reach the forwarded host of the other family', async () => {
    const config = fixtureConfig();
    const fw = createFirewall(config, { nft: new RecordingNft() });
    const web6 = config.apps.find((a) => a.name === 'web6')!;
    await expect(fw.grantService('10.0.0.1', web6, 10)).rejects.toThrow(/forwards to an IPv6 host/);
  });
});

describe('reading grants back', () => {
  it('parses nft JSON set listings (plain and concatenated elements)', () => {
    const json = JSON.stringify({
      nftables: [{ metainfo: {} }, { set: { elem: [{ elem: { val: { concat: ['10.0.0.2', 'tcp', 1194] }, timeout: 5, expires: 4 } }, '10.0.0.3'] } }],
    });
    expect(parseSetElements(json)).toEqual([{ val: { concat: ['10.0.0.2', 'tcp', 1194] }, timeout: 5, expires: 4 }, { val: '10.0.0.3' }]);
  });

  it('parses ipset save output', () => {
    const text = 'create s hash:ip,port family inet6 hashsize 1024 maxelem 65536 timeout 0\nadd s 2001:db8::2,udp:1194 timeout 27\nadd s 10.0.0.1,tcp:22\n';
    expect(parseIpsetSave(text)).toEqual([
      { entry: '2001:db8::2,udp:1194', timeout: 27 },
      { entry: '10.0.0.1,tcp:22', timeout: 0 },
    ]);
  });
});

describe('capture choice', () => {
  it('auto picks nfqueue when the backend can install it, else nflog with the reason', () => {
    expect(chooseCapture('auto', { nfqueue: true, nflog: true, notes: [] }).capture).toBe('nfqueue');
    const fallback = chooseCapture('auto', { nfqueue: false, nflog: true, notes: ['no queue expression'] });
    expect(fallback.capture).toBe('nflog');
    expect(fallback.reason).toContain('no queue expression');
    expect(chooseCapture('nfqueue', { nfqueue: false, nflog: true, notes: [] }).capture).toBe('nfqueue');
  });
});
