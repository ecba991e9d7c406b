/**
 * Throwaway certificates made with openssl for the TLS file tests: self-signed pairs, a CA and
 * a leaf it signed, in a directory the caller removes.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface PemPair {
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** A self-signed P-256 certificate valid for `days` (from now), and its key. */
export function selfSigned(dir: string, name: string, days = 60, commonName = name): PemPair {
  const pair = { cert: join(dir, `${name}.crt.pem`), key: join(dir, `${name}.key.pem`) };
  openssl([
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
    '-keyout',
    pair.key,
    '-out',
    pair.cert,
  ]);
  return pair;
}

/** A CA and a leaf certificate it signed (`leaf.cert` holds the leaf only). */
export function caAndLeaf(dir: string, name: string): { ca: PemPair; leaf: PemPair } {
  const ca = selfSigned(dir, `${name}-ca`, 365);
  const leaf = { cert: join(dir, `${name}-leaf.crt.pem`), key: join(dir, `${name}-leaf.key.pem`) };
  const csr = join(dir, `${name}-leaf.csr`);
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', leaf.key, '-out', csr]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '90', '-out', leaf.cert]);
  return { ca, leaf };
}

/** The serial number (upper-case hex) of a certificate file, as openssl prints it. */
export function serialOf(certFile: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-serial', '-in', certFile], { encoding: 'utf8' })
    .trim()
    .replace(/^serial=/, '')
    .toUpperCase();
}
