/** A reverse proxy serves step 2 on the public port; knock-port's own port is closed from outside. */
import { describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { fixtureConfig, proxyFrontConfig } from './fixture.js';

describe('firewall plan with a proxy in front of step 2', () => {
  it('gates the public port and names the internal one only when they differ', () => {
    expect(planFirewall(proxyFrontConfig())).toMatchObject({ step2Port: 443, internalStep2Port: 4443 });
    expect(planFirewall(fixtureConfig()).internalStep2Port).toBeUndefined();
    const samePort = fixtureConfig();
    expect(planFirewall({ ...samePort, global: { ...samePort.global, step2PublicPort: 443 } }).internalStep2Port).toBeUndefined();
  });

  it('with no external interface named, drops the internal port on every interface but loopback', () => {
    const nft = createFirewall(proxyFrontConfig({ interfaceExt: 'any' }), { type: 'nftables' }).render('nflog');
    expect(nft).toContain('add rule inet knockport input_filter iifname != "lo" tcp dport 4443 drop');
    expect(nft).toContain('add rule inet knockport input_filter tcp dport 443 goto step2');
    const iptables = createFirewall(proxyFrontConfig({ interfaceExt: 'any' }), { type: 'iptables' }).render('nflog');
    expect(iptables).toContain('-A KNOCKPORT-INPUT ! -i lo -p tcp --dport 4443 -j DROP');
    expect(iptables).toContain('-A KNOCKPORT-INPUT -p tcp --dport 443 -j KNOCKPORT-STEP2');
  });
});
