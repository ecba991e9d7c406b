/**
 * The demo network: a gateway namespace, a client on its WAN side and a LAN host behind it,
 * IPv4 and IPv6. Addresses are documentation ranges (RFC 5737, RFC 3849) and only ever exist
 * inside these namespaces.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Netns, destroyAll, wire } from './netns.js';

export const ADDR = {
  gwWan4: '192.0.2.1',
  client4: '192.0.2.2',
  client4b: '192.0.2.3',
  gwWan6: '2001:db8:1::1',
  client6: '2001:db8:1::2',
  gwLan4: '198.51.100.1',
  lan4: '198.51.100.2',
  gwLan6: '2001:db8:2::1',
  lan6: '2001:db8:2::2',
} as const;

export const IF = { gwWan: 'kpwan0', clientWan: 'kpcli0', gwLan: 'kplan0', lanHost: 'kphost0' } as const;

export interface Topology {
  gw: Netns;
  client: Netns;
  lan: Netns;
  /** Kills everything running inside and deletes the namespaces; safe to call twice. */
  destroy(): void;
}

/**
 * Builds the three namespaces (labels become part of their names), routes and forwarding.
 * On failure, whatever was made is removed before the error is thrown.
 */
export function createTopology(labels: { gateway: string; client: string; lan: string }): Topology {
  const created: Netns[] = [];
  try {
    const gw = Netns.create(labels.gateway);
    created.push(gw);
    const client = Netns.create(labels.client);
    created.push(client);
    const lan = Netns.create(labels.lan);
    created.push(lan);
    wire(gw, client, { ifA: IF.gwWan, ifB: IF.clientWan, a4: ADDR.gwWan4, b4: ADDR.client4, a6: ADDR.gwWan6, b6: ADDR.client6 });
    client.ip('addr', 'add', `${ADDR.client4b}/24`, 'dev', IF.clientWan);
    wire(gw, lan, { ifA: IF.gwLan, ifB: IF.lanHost, a4: ADDR.gwLan4, b4: ADDR.lan4, a6: ADDR.gwLan6, b6: ADDR.lan6 });
    lan.ip('route', 'add', 'default', 'via', ADDR.gwLan4);
    lan.ip('-6', 'route', 'add', 'default', 'via', ADDR.gwLan6);
    gw.sysctl('net.ipv4.ip_forward', '1');
    gw.sysctl('net.ipv6.conf.all.forwarding', '1');
    return { gw, client, lan, destroy: () => destroyAll(created) };
  } catch (err) {
    destroyAll(created);
    throw err;
  }
}

/**
 * A fresh self-signed P-256 certificate and key in `dir` (`cert.pem`, `key.pem`), valid `days`
 * (two by default, the demo's), with the given IP addresses and DNS names as subject alternative
 * names so that clients can verify it with `--cacert`.
 */
export function createSelfSignedCert(
  dir: string,
  commonName: string,
  ipAddresses: readonly string[] = [],
  { days = 2, dnsNames = [] }: { days?: number; dnsNames?: readonly string[] } = {},
): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const names = [...ipAddresses.map((ip) => `IP:${ip}`), ...dnsNames.map((name) => `DNS:${name}`)];
  const altNames = names.length > 0 ? ['-addext', `subjectAltName=${names.join(',')}`] : [];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      String(days),
      '-subj',
      `/CN=${commonName}`,
      ...altNames,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
