/** A config with local, forwarded, UDP and IPv6 apps, built directly (no YAML). */
import type { AppConfig, Config, Destination, Protocol } from '../../../src/config/types.js';

export interface FixtureOptions {
  interfaceExt?: string;
  interfaceInt?: string;
  ipv6?: boolean;
  lanHost4?: string;
  lanHost6?: string;
  tableName?: string;
}

function app(name: string, port: number, protocol: Protocol, destination: Destination, o: Required<FixtureOptions>, masquerade = false): AppConfig {
  return {
    name,
    port,
    protocol,
    destination,
    duration: 60,
    step2Duration: 10,
    users: [],
    masquerade,
    alwaysAllow: [],
    interfaceExt: o.interfaceExt,
    interfaceInt: o.interfaceInt,
  };
}

export function fixtureConfig(options: FixtureOptions = {}): Config {
  const o: Required<FixtureOptions> = {
    interfaceExt: 'eth0',
    interfaceInt: 'eth1',
    ipv6: true,
    lanHost4: '192.168.50.10',
    lanHost6: 'fd00:50::10',
    tableName: 'knockport',
    ...options,
  };
  return {
    source: 'fixture.yaml',
    global: {
      step1Path: '/step-1-abc',
      step2Path: '/step-2-def',
      rateLimitPerMinute: 10,
      interfaceExt: o.interfaceExt,
      interfaceInt: o.interfaceInt,
      step1Port: 80,
      step2Port: 443,
      firewallType: 'nftables',
      capture: 'auto',
      queueNum: 7,
      nflogGroup: 5,
      step1Workers: 1,
      step1Handshake: 'cookie',
      step1Reply: 'silent',
      step1Xdp: 'off',
      stateDir: '/var/lib/knock-port',
      tableName: o.tableName,
      ipv6: o.ipv6,
      controlSocket: '/run/knock-port.sock',
      packetMark: 0x4b50,
      grantMark: 0x10000000,
      hostFirewall: 'insert',
      sourcePrefixV4: 32,
      sourcePrefixV6: 64,
      lockoutUserFailures: 10,
      lockoutAppFailures: 100,
      lockoutWindowSeconds: 600,
      lockoutSeconds: 900,
      step1RatePerSecond: 20_000,
    },
    apps: [
      app('ssh', 2222, 'tcp', { kind: 'local' }, o),
      app('openvpn', 1194, 'udp', { kind: 'local' }, o),
      app('rdp', 3389, 'tcp', { kind: 'forward', address: o.lanHost4, family: 4, port: 3390 }, o, true),
      app('web6', 8443, 'tcp', { kind: 'forward', address: o.lanHost6, family: 6, port: 8080 }, o),
    ],
  };
}

/** The fixture with a reverse proxy serving step 2 on 443 and knock-port's own listener on 4443. */
export function proxyFrontConfig(options: FixtureOptions = {}): Config {
  const config = fixtureConfig(options);
  return { ...config, global: { ...config.global, step2Port: 4443, step2PublicPort: 443, step2ListenAddress: '127.0.0.1', trustedProxies: ['127.0.0.1/32'] } };
}
