/**
 * Where the TLS files of `run` and `check` come from (their `--cert` and `--key` flags are in
 * options.ts): the flags, else `global.tls_cert` and `global.tls_key`, so a systemd unit's
 * pre-start `check` needs no flags.
 */
import { KnockUsageError } from '../client/errors.js';
import type { Config } from '../config/types.js';
import { checkTlsFiles, daysLeft, type CheckedTls, type TlsFileRef, type TlsFiles } from '../step2/tls-files.js';
import type { TlsPathOptions } from './options.js';
import { ERROR_PREFIX, type Terminal } from './terminal.js';

/** The flag, else the config key; undefined when neither names the file. */
function pick(flag: string | undefined, flagName: string, configured: string | undefined, key: string): TlsFileRef | undefined {
  if (flag !== undefined) return { path: flag, namedBy: flagName };
  return configured === undefined ? undefined : { path: configured, namedBy: `global.${key}` };
}

/** The certificate and key to use, or undefined when none is named; one without the other is a usage error. */
export function tlsFilesFor(config: Config, opts: TlsPathOptions): TlsFiles | undefined {
  const cert = pick(opts.cert, '--cert', config.global.tlsCert, 'tls_cert');
  const key = pick(opts.key, '--key', config.global.tlsKey, 'tls_key');
  if (cert && key) return { cert, key };
  if (cert) throw new KnockUsageError(`a TLS certificate (${cert.namedBy}) without its key: give --key FILE or set global.tls_key`);
  if (key) throw new KnockUsageError(`a TLS key (${key.namedBy}) without its certificate: give --cert FILE or set global.tls_cert`);
  return undefined;
}

/** `run`: the pair, checked; no certificate at all is a usage error (step 2 is never plain HTTP). */
export function checkedTlsFor(config: Config, opts: TlsPathOptions): CheckedTls {
  const files = tlsFilesFor(config, opts);
  if (!files) {
    throw new KnockUsageError('no TLS certificate: give --cert and --key, or set global.tls_cert and global.tls_key (step 2 is only ever served over HTTPS)');
  }
  return checkTlsFiles(files);
}

/** `check`: the pair checked as `run` checks it, or undefined when neither the flags nor the config name one. */
export function checkedTlsIfNamed(config: Config, opts: TlsPathOptions): CheckedTls | undefined {
  const files = tlsFilesFor(config, opts);
  return files && checkTlsFiles(files);
}

/** The pair in `check --json` (paths are not secrets; nothing of the key but its file). */
export interface TlsSummary {
  cert: string;
  key: string;
  subject: string;
  serial: string;
  fingerprint256: string;
  notAfter: string;
  daysLeft: number;
}

export function tlsSummary(tls: CheckedTls, now: Date = new Date()): TlsSummary {
  const { certificate, files } = tls;
  return {
    cert: files.cert.path,
    key: files.key.path,
    subject: certificate.subject,
    serial: certificate.serial,
    fingerprint256: certificate.fingerprint256,
    notAfter: certificate.notAfter.toISOString(),
    daysLeft: daysLeft(certificate, now),
  };
}

/** `check`'s line about the pair (which certificate, until when) and its warnings on stderr. */
export function writeTlsSummary(terminal: Terminal, tls: CheckedTls, now: Date = new Date()): void {
  const summary = tlsSummary(tls, now);
  const days = `${summary.daysLeft} day${summary.daysLeft === 1 ? '' : 's'} left`;
  terminal.stdout.write(`tls: ${summary.cert} with ${summary.key}: ${summary.subject}, serial ${summary.serial}, valid until ${summary.notAfter} (${days})\n`);
  for (const warning of tls.warnings) terminal.stderr.write(`${ERROR_PREFIX}warning: ${warning}\n`);
}
