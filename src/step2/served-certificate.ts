/**
 * The certificate step 2 serves across reloads: a SIGHUP reads the files again and a pair that
 * passes every check serves new connections; one that does not is logged and reported by
 * `health` while the previous pair goes on serving (a half-renewed certificate must not take
 * step 2 down).
 */
import { describeError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { daysLeft, expiryWarnings, type CertificateFacts, type CheckedTls } from './tls-files.js';

/** The served certificate as `health --json` shows it. */
export interface ServedCertificateHealth {
  subject: string;
  serial: string;
  fingerprint256: string;
  notAfter: string;
  daysLeft: number;
}

export class ServedCertificate {
  /** Why the pair read at the last reload was refused; undefined once a reload succeeds. */
  private refusal: string | undefined;

  constructor(
    private tls: CheckedTls,
    private readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  get current(): CheckedTls {
    return this.tls;
  }

  /** True while the pair read at the last reload is refused (the previous one still serves). */
  get reloadRefused(): boolean {
    return this.refusal !== undefined;
  }

  /**
   * Reads the pair again (`read` throws when it fails a check) and hands a good one to `serve`,
   * which makes new connections use it. A refused pair changes nothing but the report.
   */
  reload(read: () => CheckedTls, serve: (tls: CheckedTls) => void): void {
    let next: CheckedTls;
    try {
      next = read();
      serve(next);
    } catch (err) {
      this.refusal = describeError(err);
      this.logger.error(
        { err: this.refusal, serving: logFields(this.tls.certificate) },
        'TLS certificate reload refused; still serving the previous certificate',
      );
      return;
    }
    const changed = next.certificate.fingerprint256 !== this.tls.certificate.fingerprint256 || !next.key.equals(this.tls.key);
    this.tls = next;
    this.refusal = undefined;
    for (const warning of next.warnings) this.logger.warn(warning);
    this.logger.info({ ...logFields(next.certificate), changed }, changed ? 'TLS certificate reloaded: new connections get it' : 'TLS certificate unchanged');
  }

  /** Degraded conditions for `health`: a refused reload, an expired certificate. */
  problems(): string[] {
    const { certificate, files } = this.tls;
    const problems: string[] = [];
    if (this.refusal !== undefined) {
      problems.push(
        `TLS: the certificate and key read at the last reload were refused (${this.refusal}); still serving the previous certificate (serial ${certificate.serial}, expires ${certificate.notAfter.toISOString()})`,
      );
    }
    if (this.now() > certificate.notAfter) {
      problems.push(
        `TLS: the certificate ${files.cert.path} expired on ${certificate.notAfter.toISOString()}: clients that verify it refuse step 2; renew it and reload`,
      );
    }
    return problems;
  }

  /** Worth acting on, not degraded: expiry within EXPIRY_WARNING_DAYS. */
  warnings(): string[] {
    return expiryWarnings(this.tls.files.cert, this.tls.certificate, this.now());
  }

  health(): ServedCertificateHealth {
    const { certificate } = this.tls;
    return {
      subject: certificate.subject,
      serial: certificate.serial,
      fingerprint256: certificate.fingerprint256,
      notAfter: certificate.notAfter.toISOString(),
      daysLeft: daysLeft(certificate, this.now()),
    };
  }
}

/** The certificate in a log line: enough to tell two apart, nothing secret. */
export function logFields(certificate: CertificateFacts): Record<string, string> {
  return { subject: certificate.subject, serial: certificate.serial, fingerprint256: certificate.fingerprint256, notAfter: certificate.notAfter.toISOString() };
}
