/**
 * The host's own firewall around knock-port, as operators write it, installed in a gateway
 * namespace: a hardened nftables table, iptables (nft or legacy) with policy DROP, and ufw. Each
 * ends its input and forward chains in a drop or a reject, so an accept appended after them
 * (instead of put at the top) would never be reached.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from './netns.js';

/**
 * /etc/nftables.conf of a hardened gateway: policy drop, established traffic, SSH and
 * everything else from the LAN interface `lan`, ICMP; whatever is left is rejected (input) or
 * dropped (forward). `priority` is the chains' (an iptables-based knock-port asks for one after
 * `filter`, where its own gate runs).
 */
export function nftablesHostRuleset(lan: string, priority = 'filter'): string {
  return `table inet filter {
  chain input {
    type filter hook input priority ${priority}; policy drop;
    ct state established,related accept
    ct state invalid drop
    iifname "lo" accept
    iifname "${lan}" tcp dport 22 accept
    meta l4proto { icmp, ipv6-icmp } accept
    counter reject with icmpx admin-prohibited
  }
  chain forward {
    type filter hook forward priority ${priority}; policy drop;
    ct state established,related accept
    iifname "${lan}" accept
    counter drop
  }
  chain output {
    type filter hook output priority ${priority}; policy drop;
    ct state established,related accept
    oifname "lo" accept
    meta l4proto { icmp, ipv6-icmp } accept
    oifname "${lan}" accept
  }
}
`;
}

/** `iptables-restore` input of a hardened gateway: policy DROP and a final REJECT on input and forward. */
export function iptablesHostRuleset(family: 4 | 6, lan: string): string {
  const icmp = family === 4 ? 'icmp' : 'ipv6-icmp';
  return `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -i ${lan} -p tcp --dport 22 -j ACCEPT
-A INPUT -p ${icmp} -j ACCEPT
-A INPUT -j REJECT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i ${lan} -j ACCEPT
-A FORWARD -j REJECT
COMMIT
`;
}

/** Loads the iptables host ruleset (both families) with `iptables-VARIANT-restore`: a full reload of the filter table. */
export function applyIptablesHost(gw: Netns, variant: 'nft' | 'legacy', lan: string): void {
  for (const family of [4, 6] as const) gw.exec(`${family === 4 ? 'iptables' : 'ip6tables'}-${variant}-restore`, ['-w'], iptablesHostRuleset(family, lan));
}

/**
 * ufw inside a gateway namespace, with private copies of /etc/ufw and /etc/default/ufw bind-mounted
 * in a mount namespace of each command's own: the machine's ufw and its files are never touched.
 */
export class NamespacedUfw {
  private readonly dir = mkdtempSync(join(tmpdir(), 'kp-ufw-'));

  constructor(private readonly gw: Netns) {
    gw.exec('cp', ['-a', '/etc/ufw', this.dir]);
    gw.exec('cp', ['-a', '/etc/default/ufw', join(this.dir, 'default-ufw')]);
  }

  /** The shell command line that runs `commands` with this ufw's files. */
  commandLine(commands: string): string[] {
    const mounts = `mount --bind ${this.dir}/ufw /etc/ufw && mount --bind ${this.dir}/default-ufw /etc/default/ufw`;
    return ['unshare', '-m', 'sh', '-c', `${mounts} && ${commands}`];
  }

  run(commands: string): void {
    const [cmd, ...args] = this.commandLine(commands);
    this.gw.exec(cmd!, args);
  }

  /** `default deny incoming` and `default deny routed`, with SSH and routing from the LAN allowed. */
  enableHardened(lan: string): void {
    this.run(
      `ufw --force enable >/dev/null && ufw default deny incoming >/dev/null && ufw default deny routed >/dev/null && ufw allow in on ${lan} to any port 22 >/dev/null && ufw route allow in on ${lan} >/dev/null`,
    );
  }

  destroy(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
