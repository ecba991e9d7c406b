/** `always_allow`: an operator's lifeline, parsed, merged per app, shown by check, and the SSH-session warning it silences. */
import { describe, expect, it } from 'vitest';
import { sshLockoutWarning } from '../../../src/config/ssh-session.js';
import { summarizeConfig } from '../../../src/config/summary.js';
import { createFirewall } from '../../../src/firewall/index.js';
import { expectRefusedOnce, load, VALID } from './helpers.js';

const SSH_APP = `ssh:
  port: 22
  access_key_http: [7c1e9a3f5d0b2846]
  access_key_https: [1f5b9d3a7e0c4862]
  duration: 60
  step2_https_duration: 5
`;

const withLines = (globalLines: string, app = SSH_APP) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n${globalLines}`) + app;

describe('always_allow', () => {
  it('merges the global networks into every app, with the app its own, normalized', () => {
    const config = load(withLines('  always_allow: [198.51.100.7, "2001:db8:9::/48"]\n', `${SSH_APP}  always_allow: [203.0.113.0/24]\n`));
    const ssh = config.apps.find((a) => a.name === 'ssh')!;
    const vpn = config.apps.find((a) => a.name === 'openvpn')!;
    expect(ssh.alwaysAllow).toEqual(['198.51.100.7/32', '2001:db8:9::/48', '203.0.113.0/24']);
    expect(vpn.alwaysAllow).toEqual(['198.51.100.7/32', '2001:db8:9::/48']);
    expect(summarizeConfig(config)).toContain('always allowed: 198.51.100.7/32, 2001:db8:9::/48, 203.0.113.0/24');
  });

  it.each(['0.0.0.0/0', '::/0'])('refuses %s: the gate would protect nothing', (network) => {
    expectRefusedOnce(
      withLines(`  always_allow: ["${network}"]\n`),
      'global.always_allow[0]',
      'always_allow',
      /allows every address: the gate would protect nothing/,
    );
  });

  it('refuses what is not a network', () => {
    expectRefusedOnce(withLines('  always_allow: [office]\n'), 'global.always_allow[0]', 'always_allow', /is not an IP address or network/);
  });

  it('puts the networks in the rules of every backend: marked, accepted or DNATed, and only for their family', () => {
    const config = load(withLines('  always_allow: [198.51.100.0/24]\n'));
    const nft = createFirewall(config, { type: 'nftables' }).render('nflog');
    expect(nft).toContain('add rule inet knockport service ip saddr { 198.51.100.0/24 } meta l4proto tcp th dport 22 accept');
    expect(nft).toMatch(/prerouting_mark iifname "eth0" tcp dport 22 fib daddr type local ip saddr \{ 198\.51\.100\.0\/24 \} ct mark set/);
    expect(nft).not.toMatch(/ip6 saddr \{ 198/);
    const ipt = createFirewall(config, { type: 'iptables' }).render('nflog');
    expect(ipt).toContain('-A KNOCKPORT-SERVICE -p tcp --dport 22 -s 198.51.100.0/24 -j ACCEPT');
    expect(ipt.split('# ip6tables-restore')[1]).not.toContain('198.51.100.0/24');
  });
});

describe('the SSH-session warning', () => {
  const config = load(withLines(''));
  it('warns when check or run runs in an SSH session to a protected port from an address not always allowed', () => {
    expect(sshLockoutWarning(config, '192.0.2.10 50022 192.0.2.1 22')).toMatch(
      /^this SSH session \(from 192\.0\.2\.10 to port 22\) uses a port app 'ssh' protects, and 192\.0\.2\.10 is not always allowed/,
    );
  });

  it('is silent outside SSH, on an unprotected port, and for an always-allowed address', () => {
    expect(sshLockoutWarning(config, undefined)).toBeUndefined();
    expect(sshLockoutWarning(config, '192.0.2.10 50022 192.0.2.1 2222')).toBeUndefined();
    const allowed = load(withLines('  always_allow: [192.0.2.0/24]\n'));
    expect(sshLockoutWarning(allowed, '192.0.2.10 50022 192.0.2.1 22')).toBeUndefined();
  });
});
