/**
 * `knock-port init`'s parts: the interface of the default route, the TLS files already on the
 * host (or a fresh self-signed pair), and the text of a minimal config with random paths.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { isIP } from 'node:net';
import { createSelfSignedCert } from '../../demo/topology.js';
import { protectLike, randomPath } from './user-file.js';

/**
 * The interface of the IPv4 default route (/proc/net/route), else of the IPv6 one
 * (/proc/net/ipv6_route): where the knocks will arrive on most gateways.
 */
export function defaultRouteInterface(procNet = '/proc/net'): string | undefined {
  const v4 = readLines(join(procNet, 'route')).slice(1);
  for (const fields of v4.map((line) => line.trim().split(/\s+/))) {
    // Iface Destination Gateway Flags ... Mask: the default route has destination and mask 0.
    if (fields[1] === '00000000' && fields[7] === '00000000' && fields[0] !== undefined) return fields[0];
  }
  for (const fields of readLines(join(procNet, 'ipv6_route')).map((line) => line.trim().split(/\s+/))) {
    // destination, prefix length, ..., device last; skip the loopback's unreachable default.
    if (fields[0] === '0'.repeat(32) && fields[1] === '00' && fields.length >= 10 && fields.at(-1) !== 'lo') return fields.at(-1);
  }
  return undefined;
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '');
  } catch {
    return [];
  }
}

/** The interface's addresses clients may use: IPv4 first, then global IPv6 (no link-local). */
export function interfaceAddresses(name: string): string[] {
  const addresses = (networkInterfaces()[name] ?? []).filter((address) => !address.internal || name === 'lo');
  const v4 = addresses.filter((address) => address.family === 'IPv4');
  const v6 = addresses.filter((address) => address.family === 'IPv6' && !address.address.toLowerCase().startsWith('fe80'));
  return [...v4, ...v6].map((address) => address.address);
}

/** An address clients may reach the gateway at: the interface's first IPv4, else its first global IPv6. */
export function interfaceAddress(name: string): string | undefined {
  return interfaceAddresses(name)[0];
}

export interface TlsPair {
  cert: string;
  key: string;
  /** Made by init: clients must trust this certificate itself. */
  selfSigned: boolean;
}

/**
 * The TLS files already there: `tls/cert.pem` and `tls/key.pem` next to the config (where the
 * package's unit looks), else a single certbot lineage in /etc/letsencrypt/live.
 */
export function findTlsPair(configPath: string, letsencrypt = '/etc/letsencrypt/live'): TlsPair | undefined {
  const dir = join(dirname(configPath), 'tls');
  if (existsSync(join(dir, 'cert.pem')) && existsSync(join(dir, 'key.pem')))
    return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), selfSigned: false };
  let lineages: string[] = [];
  try {
    lineages = readdirSync(letsencrypt).filter((name) => existsSync(join(letsencrypt, name, 'fullchain.pem')));
  } catch {
    return undefined;
  }
  if (lineages.length !== 1) return undefined;
  const live = join(letsencrypt, lineages[0]!);
  return { cert: join(live, 'fullchain.pem'), key: join(live, 'privkey.pem'), selfSigned: false };
}

/** Days a self-signed certificate made by init stays valid: about two years, then run init's command again. */
export const SELF_SIGNED_DAYS = 825;

/**
 * A self-signed pair in `tls/` next to the config, naming each of `names` (addresses and host
 * names clients use) so that clients can verify it with the certificate itself.
 */
export function makeSelfSignedPair(configPath: string, names: readonly string[]): TlsPair {
  const dir = join(dirname(configPath), 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  protectLike(dir, configPath, 0o750);
  const unique = [...new Set(names)];
  const ips = unique.filter((name) => isIP(name) !== 0);
  const dnsNames = unique.filter((name) => isIP(name) === 0);
  const { cert, key } = createSelfSignedCert(dir, unique[0] ?? 'knock-port', ips, { days: SELF_SIGNED_DAYS, dnsNames });
  protectLike(key, configPath);
  return { cert, key, selfSigned: true };
}

export interface InitChoices {
  interfaceExt: string;
  tls: TlsPair;
  app: string;
  port: number;
}

/** The text of a minimal config: random paths, one app; its users go in users.d/. */
export function minimalConfigYaml(choices: InitChoices): string {
  return `# knock-port config written by knock-port init. Every key: man knock-port.yaml.
# Users are in users.d/ (knock-port user add NAME --app APP); more settings can go in conf.d/*.yaml.
global:
  http_post_path: ${randomPath()}
  https_post_path: ${randomPath()}
  interface_ext: ${choices.interfaceExt}
  tls_cert: ${choices.tls.cert}
  tls_key: ${choices.tls.key}

${choices.app}:
  port: ${choices.port}
  duration: 3600
  step2_https_duration: 10
`;
}
