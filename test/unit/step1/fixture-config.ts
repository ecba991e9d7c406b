/** The Config the step-1 tests and the committed pcap fixtures use (see test/fixtures/pcap/capture.sh). */
import { digestKey } from '../../../src/config/key-digest.js';
import type { AppConfig, Config, GlobalConfig, User } from '../../../src/config/types.js';

export const STEP1_PATH = '/step-1-k7Qz';
export const OPENVPN_KEYS = ['K1-openvpn-alice-7f3a', 'K1-openvpn-bob-91c2'];
export const SSH_KEY = 'K1-ssh-carol-55d0';
export const OTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

function user(name: string, index: number, step1Key: string, step1OtpSecret?: string): User {
  return { name, index, step1Key: digestKey(step1Key), step2Key: digestKey(`${step1Key}-https`), ...(step1OtpSecret ? { step1OtpSecret } : {}) };
}

function app(name: string, port: number, users: User[]): AppConfig {
  return {
    name,
    port,
    protocol: 'tcp',
    destination: { kind: 'local' },
    duration: 3600,
    step2Duration: 10,
    users,
    masquerade: false,
    alwaysAllow: [],
    interfaceExt: 'eth0',
    interfaceInt: 'eth0',
  };
}

export function fixtureConfig(overrides: Partial<GlobalConfig> = {}): Config {
  const global: GlobalConfig = {
    step1Path: STEP1_PATH,
    step2Path: '/step-2-Pq9w',
    rateLimitPerMinute: 1000,
    interfaceExt: 'eth0',
    interfaceInt: 'eth0',
    step1Port: 80,
    step2Port: 443,
    firewallType: 'nftables',
    capture: 'auto',
    queueNum: 0,
    nflogGroup: 0,
    step1Workers: 1,
    step1Handshake: 'cookie',
    step1Reply: 'silent',
    step1Xdp: 'off',
    stateDir: '/var/lib/knock-port',
    tableName: 'knockport',
    ipv6: true,
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
    ...overrides,
  };
  return {
    global,
    apps: [
      app('openvpn', 1194, [user('alice', 0, OPENVPN_KEYS[0]!), user('bob', 1, OPENVPN_KEYS[1]!)]),
      app('ssh', 22, [user('carol', 0, SSH_KEY, OTP_SECRET)]),
    ],
    source: 'test',
  };
}
