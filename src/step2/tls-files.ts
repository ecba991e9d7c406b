/**
 * The step-2 certificate and key, checked as a whole before the daemon touches the firewall (and
 * again on each SIGHUP): both files readable and PEM, the right kind in each (a swap is named as
 * such), the key belonging to the first certificate, the certificate valid now, and the pair
 * accepted by TLS with step 2's settings. A failure names the file and what to do.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { describeError, KnockPortError, SetupExitCode } from '../shared/errors.js';
import { explainReadError } from '../shared/read-error.js';
import { step2TlsOptions } from './server.js';

/** A TLS file and what named it (`--cert`, `global.tls_key`), for messages. */
export interface TlsFileRef {
  path: string;
  namedBy: string;
}

export interface TlsFiles {
  cert: TlsFileRef;
  key: TlsFileRef;
}

/** What an operator compares: which certificate is served, and until when. */
export interface CertificateFacts {
  subject: string;
  serial: string;
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

/** A pair that passed every check: the PEM to serve and what it is. */
export interface CheckedTls {
  /** The certificate blocks of the certificate file (server certificate first, then the chain). */
  cert: Buffer;
  /** The private key block of the key file. */
  key: Buffer;
  files: TlsFiles;
  certificate: CertificateFacts;
  /** Accepted, but worth acting on: expiry within EXPIRY_WARNING_DAYS, a chain out of order. */
  warnings: string[];
}

/** The certificate or key cannot be used; the message names the file and the fix. */
export class TlsFileError extends KnockPortError {
  override readonly exitCode = SetupExitCode.tlsFiles;
}

/** Fewer days than this before the certificate expires: a warning (check, start log, health). */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 86_400_000;

interface PemBlock {
  label: string;
  text: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
const isCertificate = (block: PemBlock) => block.label === 'CERTIFICATE' || block.label === 'TRUSTED CERTIFICATE';
const isPrivateKey = (block: PemBlock) => block.label.endsWith('PRIVATE KEY');

function pemBlocks(text: string): PemBlock[] {
  return [...text.matchAll(PEM_BLOCK)].map((match) => ({ label: match[1]!, text: `${match[0]}\n` }));
}

/** Reads, parses and checks the pair; throws TlsFileError saying which file is wrong and how. */
export function checkTlsFiles(files: TlsFiles, now: Date = new Date()): CheckedTls {
  const certBlocks = pemBlocks(readTlsFile(files.cert, 'certificate'));
  const keyBlocks = pemBlocks(readTlsFile(files.key, 'key'));
  refuseWrongKinds(files, certBlocks, keyBlocks);
  const certificates = parseCertificates(files.cert, certBlocks.filter(isCertificate));
  const keyBlock = keyBlocks.find(isPrivateKey)!;
  const privateKey = parsePrivateKey(files.key, keyBlock);
  requireMatch(files, certificates, privateKey);
  const leaf = certificates[0]!;
  const certificate = factsOf(leaf);
  requireValidNow(files.cert, certificate, now);
  const pem = {
    cert: Buffer.from(
      certBlocks
        .filter(isCertificate)
        .map((block) => block.text)
        .join(''),
    ),
    key: Buffer.from(keyBlock.text),
  };
  try {
    createSecureContext(step2TlsOptions(pem));
  } catch (err) {
    throw new TlsFileError(`${describeFile(files.cert, 'certificate')} and ${describeFile(files.key, 'key')} are refused by TLS: ${describeError(err)}`);
  }
  return { ...pem, files, certificate, warnings: [...expiryWarnings(files.cert, certificate, now), ...chainWarnings(files.cert, certificates)] };
}

/** Days from `now` until the certificate expires, rounded down (negative once expired). */
export function daysLeft(certificate: CertificateFacts, now: Date): number {
  return Math.floor((certificate.notAfter.getTime() - now.getTime()) / DAY_MS);
}

/** The expiry warning for a certificate close to its end, or nothing. */
export function expiryWarnings(file: TlsFileRef, certificate: CertificateFacts, now: Date): string[] {
  const days = daysLeft(certificate, now);
  if (days >= EXPIRY_WARNING_DAYS || now > certificate.notAfter) return [];
  return [
    `the TLS certificate ${file.path} expires on ${certificate.notAfter.toISOString()}, in ${days} day${days === 1 ? '' : 's'}: renew it, then reload (systemctl reload knock-port)`,
  ];
}

function describeFile(file: TlsFileRef, what: 'certificate' | 'key'): string {
  return `the TLS ${what} file ${file.path} (${file.namedBy})`;
}

function readTlsFile(file: TlsFileRef, what: 'certificate' | 'key'): string {
  let text: string;
  try {
    text = readFileSync(file.path, 'latin1');
  } catch (err) {
    throw new TlsFileError(`cannot read ${describeFile(file, what)}: ${explainReadError(err, file.path)}`);
  }
  if (text.trim() === '') throw new TlsFileError(`${describeFile(file, what)} is empty`);
  return text;
}

/** A key where the certificate belongs (or the reverse) is said as such, a swap of both at once too. */
function refuseWrongKinds(files: TlsFiles, certBlocks: PemBlock[], keyBlocks: PemBlock[]): void {
  const certHolds = certBlocks.some(isCertificate) ? undefined : contents(certBlocks);
  const keyHolds = keyBlocks.some(isPrivateKey) ? undefined : contents(keyBlocks);
  const swapped = `${files.cert.namedBy} and ${files.key.namedBy} swapped?`;
  if (certHolds === 'a private key' && keyHolds === 'a certificate') {
    throw new TlsFileError(`${describeFile(files.cert, 'certificate')} holds a private key and ${describeFile(files.key, 'key')} a certificate: ${swapped}`);
  }
  if (certHolds !== undefined)
    throw new TlsFileError(`${describeFile(files.cert, 'certificate')} ${certificateFileProblem(certHolds, files.cert.path, swapped)}`);
  if (keyHolds !== undefined) throw new TlsFileError(`${describeFile(files.key, 'key')} ${keyFileProblem(keyHolds, files.key.path, swapped)}`);
  if (keyBlocks.some((block) => block.label === 'ENCRYPTED PRIVATE KEY') || keyBlocks.some((block) => block.text.includes('Proc-Type: 4,ENCRYPTED'))) {
    throw new TlsFileError(
      `${describeFile(files.key, 'key')} is encrypted with a passphrase, which the daemon has no way to ask for: ` +
        `write it unencrypted (openssl pkey -in ${files.key.path} -out key.pem), readable by the daemon's user only`,
    );
  }
}

type Contents = 'a private key' | 'a certificate' | 'a certificate signing request' | 'a public key' | 'no PEM block';

/** What a file that lacks the expected block holds instead. */
function contents(blocks: PemBlock[]): Contents {
  if (blocks.some(isPrivateKey)) return 'a private key';
  if (blocks.some(isCertificate)) return 'a certificate';
  if (blocks.some((block) => block.label.endsWith('CERTIFICATE REQUEST'))) return 'a certificate signing request';
  if (blocks.some((block) => block.label.endsWith('PUBLIC KEY'))) return 'a public key';
  return 'no PEM block';
}

function certificateFileProblem(holds: Contents, path: string, swapped: string): string {
  switch (holds) {
    case 'a private key':
      return `holds a private key, not a certificate (${swapped})`;
    case 'a certificate signing request':
      return 'holds a certificate signing request (CSR), not a certificate: give the certificate the CA issued for it (with certbot: fullchain.pem)';
    case 'no PEM block':
      return `is not PEM (no '-----BEGIN CERTIFICATE-----' line); a DER certificate converts with: openssl x509 -inform der -in ${path} -out cert.pem`;
    default:
      return `holds ${holds}, not a certificate`;
  }
}

function keyFileProblem(holds: Contents, path: string, swapped: string): string {
  switch (holds) {
    case 'a certificate':
      return `holds a certificate, not a private key (${swapped})`;
    case 'a public key':
      return 'holds a public key, not the private key: give the private key the certificate was made with';
    case 'no PEM block':
      return `is not PEM (no '-----BEGIN PRIVATE KEY-----' line); a DER key converts with: openssl pkey -inform der -in ${path} -out key.pem`;
    default:
      return `holds ${holds}, not a private key`;
  }
}

function parseCertificates(file: TlsFileRef, blocks: PemBlock[]): X509Certificate[] {
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block.text);
    } catch (err) {
      const which = blocks.length === 1 ? 'the certificate' : `certificate ${i + 1} of ${blocks.length}`;
      throw new TlsFileError(`${which} in ${describeFile(file, 'certificate')} cannot be parsed: ${describeError(err)}`);
    }
  });
}

function parsePrivateKey(file: TlsFileRef, block: PemBlock): KeyObject {
  try {
    return createPrivateKey(block.text);
  } catch (err) {
    throw new TlsFileError(`the private key in ${describeFile(file, 'key')} cannot be parsed: ${describeError(err)}`);
  }
}

function belongsTo(certificate: X509Certificate, key: KeyObject): boolean {
  try {
    return certificate.checkPrivateKey(key);
  } catch {
    return false;
  }
}

/** The key must be the first certificate's: a chain in the wrong order is told apart from another key. */
function requireMatch(files: TlsFiles, certificates: X509Certificate[], key: KeyObject): void {
  if (belongsTo(certificates[0]!, key)) return;
  const position = certificates.findIndex((certificate) => belongsTo(certificate, key));
  if (position > 0) {
    throw new TlsFileError(
      `the key in ${files.key.path} belongs to certificate ${position + 1} of ${certificates.length} in ${describeFile(files.cert, 'certificate')}: ` +
        "the server's own certificate must come first, then its intermediates (with certbot: fullchain.pem)",
    );
  }
  const leaf = factsOf(certificates[0]!);
  throw new TlsFileError(
    `the key in ${describeFile(files.key, 'key')} does not belong to the certificate in ${files.cert.path} (${leaf.subject}, serial ${leaf.serial}): ` +
      'give the key this certificate was issued for (with certbot: privkey.pem next to fullchain.pem)',
  );
}

function requireValidNow(file: TlsFileRef, certificate: CertificateFacts, now: Date): void {
  if (now > certificate.notAfter) {
    const ago = Math.floor((now.getTime() - certificate.notAfter.getTime()) / DAY_MS);
    throw new TlsFileError(
      `the certificate in ${describeFile(file, 'certificate')} expired on ${certificate.notAfter.toISOString()} (${ago} day${ago === 1 ? '' : 's'} ago): renew it`,
    );
  }
  if (now < certificate.notBefore) {
    throw new TlsFileError(
      `the certificate in ${describeFile(file, 'certificate')} is not valid before ${certificate.notBefore.toISOString()}: ` +
        `is this host's clock right (it says ${now.toISOString()})?`,
    );
  }
}

/** Each certificate after the first should have issued the one before it. */
function chainWarnings(file: TlsFileRef, certificates: X509Certificate[]): string[] {
  return certificates
    .slice(1)
    .flatMap((issuer, i) =>
      certificates[i]!.checkIssued(issuer)
        ? []
        : [
            `certificate ${i + 2} in the TLS certificate file ${file.path} did not issue certificate ${i + 1}: clients may fail to build the chain ` +
              '(order: the server certificate, then each issuer)',
          ],
    );
}

export function factsOf(certificate: X509Certificate): CertificateFacts {
  return {
    subject: certificate.subject.split('\n').join(', '),
    serial: certificate.serialNumber,
    fingerprint256: certificate.fingerprint256,
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
  };
}
