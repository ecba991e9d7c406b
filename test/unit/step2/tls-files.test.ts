/**
 * The certificate and key are checked as a pair before the daemon touches anything: each
 * mistake an operator makes (files swapped, another key, a chain out of order, an expired or
 * not yet valid certificate, a CSR, DER, an encrypted key, a directory, a missing file) is
 * refused with a message naming the file, and exit code 10; a good pair passes with its facts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SetupExitCode } from '../../../src/shared/errors.js';
import { checkTlsFiles, TlsFileError, type TlsFiles } from '../../../src/step2/tls-files.js';
import { caAndLeaf, selfSigned, serialOf, type PemPair } from '../../helpers/tls-certs.js';

let dir: string;
let good: PemPair;
let other: PemPair;
let chain: { ca: PemPair; leaf: PemPair };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kp-tls-files-'));
  good = selfSigned(dir, 'good');
  other = selfSigned(dir, 'other');
  chain = caAndLeaf(dir, 'chained');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flags = (cert: string, key: string): TlsFiles => ({ cert: { path: cert, namedBy: '--cert' }, key: { path: key, namedBy: '--key' } });

function write(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The TlsFileError `files` are refused with (exit code 10). */
function refusal(files: TlsFiles, now?: Date): TlsFileError {
  try {
    checkTlsFiles(files, now);
  } catch (err) {
    expect(err).toBeInstanceOf(TlsFileError);
    expect((err as TlsFileError).exitCode).toBe(SetupExitCode.tlsFiles);
    return err as TlsFileError;
  }
  throw new Error('expected the pair to be refused');
}

describe('a good pair', () => {
  it('passes with the certificate it serves: subject, serial, fingerprint, validity', () => {
    const tls = checkTlsFiles(flags(good.cert, good.key));
    expect(tls.certificate.subject).toBe('CN=good');
    expect(tls.certificate.serial).toBe(serialOf(good.cert));
    expect(tls.certificate.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(tls.certificate.notAfter.getTime() - Date.now()).toBeGreaterThan(59 * 86_400_000);
    expect(tls.warnings).toEqual([]);
    expect(tls.cert.toString()).toContain('-----BEGIN CERTIFICATE-----');
    expect(tls.key.toString()).toContain('PRIVATE KEY-----');
  });

  it('a chain in order (server certificate, then its CA) passes without a warning', () => {
    const fullchain = write('fullchain.pem', readFileSync(chain.leaf.cert, 'utf8') + readFileSync(chain.ca.cert, 'utf8'));
    const tls = checkTlsFiles(flags(fullchain, chain.leaf.key));
    expect(tls.certificate.subject).toBe('CN=chained');
    expect(tls.warnings).toEqual([]);
  });

  it('one file holding both the key and the certificate serves as both', () => {
    const combined = write('combined.pem', readFileSync(good.key, 'utf8') + readFileSync(good.cert, 'utf8'));
    const tls = checkTlsFiles(flags(combined, combined));
    expect(tls.certificate.serial).toBe(serialOf(good.cert));
    expect(tls.key.toString()).not.toContain('CERTIFICATE');
    expect(tls.cert.toString()).not.toContain('PRIVATE KEY');
  });

  it('warns (and still passes) when fewer than 14 days are left', () => {
    const soon = selfSigned(dir, 'soon', 10);
    const tls = checkTlsFiles(flags(soon.cert, soon.key));
    expect(tls.warnings).toEqual([expect.stringMatching(new RegExp(`^the TLS certificate ${soon.cert} expires on .*, in (9|10) days: renew it, then reload`))]);
  });
});

describe('each mistake is refused, naming the file', () => {
  it('--cert and --key swapped', () => {
    const err = refusal(flags(good.key, good.cert));
    expect(err.message).toBe(
      `the TLS certificate file ${good.key} (--cert) holds a private key and the TLS key file ${good.cert} (--key) a certificate: --cert and --key swapped?`,
    );
  });

  it('the certificate given as the key too', () => {
    expect(refusal(flags(good.cert, good.cert)).message).toBe(
      `the TLS key file ${good.cert} (--key) holds a certificate, not a private key (--cert and --key swapped?)`,
    );
  });

  it('the key given as the certificate too, with the names of config keys', () => {
    const files: TlsFiles = { cert: { path: good.key, namedBy: 'global.tls_cert' }, key: { path: good.key, namedBy: 'global.tls_key' } };
    expect(refusal(files).message).toBe(
      `the TLS certificate file ${good.key} (global.tls_cert) holds a private key, not a certificate (global.tls_cert and global.tls_key swapped?)`,
    );
  });

  it('a key that belongs to another certificate', () => {
    expect(refusal(flags(good.cert, other.key)).message).toBe(
      `the key in the TLS key file ${other.key} (--key) does not belong to the certificate in ${good.cert} (CN=good, serial ${serialOf(good.cert)}): ` +
        'give the key this certificate was issued for (with certbot: privkey.pem next to fullchain.pem)',
    );
  });

  it('a chain with the CA first', () => {
    const reversed = write('reversed.pem', readFileSync(chain.ca.cert, 'utf8') + readFileSync(chain.leaf.cert, 'utf8'));
    expect(refusal(flags(reversed, chain.leaf.key)).message).toMatch(
      new RegExp(
        `^the key in ${chain.leaf.key} belongs to certificate 2 of 2 in the TLS certificate file ${reversed} \\(--cert\\): the server's own certificate must come first`,
      ),
    );
  });

  it('an expired certificate, and one not valid yet (a clock off)', () => {
    const files = flags(good.cert, good.key);
    const later = new Date(Date.now() + 61 * 86_400_000);
    expect(refusal(files, later).message).toMatch(
      new RegExp(`^the certificate in the TLS certificate file ${good.cert} \\(--cert\\) expired on \\S+ \\(1 day ago\\): renew it$`),
    );
    const earlier = new Date(Date.now() - 86_400_000);
    expect(refusal(files, earlier).message).toMatch(/is not valid before \S+: is this host's clock right \(it says \S+\)\?$/);
  });

  it('a certificate signing request instead of the certificate', () => {
    const csr = join(dir, 'request.csr');
    execFileSync('openssl', ['req', '-new', '-key', good.key, '-subj', '/CN=good', '-out', csr], { stdio: 'ignore' });
    expect(refusal(flags(csr, good.key)).message).toMatch(
      /^the TLS certificate file \S+ \(--cert\) holds a certificate signing request \(CSR\), not a certificate/,
    );
  });

  it('a DER certificate, a DER key', () => {
    const der = join(dir, 'cert.der');
    execFileSync('openssl', ['x509', '-in', good.cert, '-outform', 'der', '-out', der], { stdio: 'ignore' });
    expect(refusal(flags(der, good.key)).message).toContain(
      `is not PEM (no '-----BEGIN CERTIFICATE-----' line); a DER certificate converts with: openssl x509 -inform der -in ${der}`,
    );
    const derKey = join(dir, 'key.der');
    execFileSync('openssl', ['pkey', '-in', good.key, '-outform', 'der', '-out', derKey], { stdio: 'ignore' });
    expect(refusal(flags(good.cert, derKey)).message).toContain(`openssl pkey -inform der -in ${derKey} -out key.pem`);
  });

  it('a key encrypted with a passphrase', () => {
    const encrypted = join(dir, 'encrypted.key');
    execFileSync('openssl', ['pkey', '-in', good.key, '-aes256', '-passout', 'pass:secret-pass', '-out', encrypted], { stdio: 'ignore' });
    expect(refusal(flags(good.cert, encrypted)).message).toMatch(
      /^the TLS key file \S+ \(--key\) is encrypted with a passphrase, which the daemon has no way to ask for/,
    );
  });

  it('a public key instead of the private key', () => {
    const pub = join(dir, 'public.pem');
    execFileSync('openssl', ['pkey', '-in', good.key, '-pubout', '-out', pub], { stdio: 'ignore' });
    expect(refusal(flags(good.cert, pub)).message).toMatch(/holds a public key, not the private key/);
  });

  it('a missing file, an empty one, a directory', () => {
    expect(refusal(flags(join(dir, 'nope.pem'), good.key)).message).toBe(
      `cannot read the TLS certificate file ${join(dir, 'nope.pem')} (--cert): no such file`,
    );
    expect(refusal(flags(good.cert, write('empty.pem', ''))).message).toBe(`the TLS key file ${join(dir, 'empty.pem')} (--key) is empty`);
    const folder = join(dir, 'tls-folder');
    mkdirSync(folder);
    expect(refusal(flags(folder, good.key)).message).toBe(`cannot read the TLS certificate file ${folder} (--cert): ${folder} is a directory, not a file`);
  });

  it('a certificate block that is not a certificate', () => {
    const broken = write('broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(refusal(flags(broken, good.key)).message).toMatch(/^the certificate in the TLS certificate file \S+ \(--cert\) cannot be parsed: /);
  });
});
