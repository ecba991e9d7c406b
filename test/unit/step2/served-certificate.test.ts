/**
 * A SIGHUP's certificate reload: a pair that passes its checks serves new connections; one that
 * fails leaves the previous pair serving and is reported (log, health) until a good one comes.
 * An expired certificate is a degraded condition, one close to expiry a warning.
 */
import { describe, expect, it, vi } from 'vitest';
import { ServedCertificate } from '../../../src/step2/served-certificate.js';
import { TlsFileError, type CheckedTls } from '../../../src/step2/tls-files.js';

const DAY = 86_400_000;
const NOW = new Date('2027-03-01T00:00:00Z');

function pair(serial: string, daysLeft: number): CheckedTls {
  return {
    cert: Buffer.from(`cert ${serial}`),
    key: Buffer.from(`key ${serial}`),
    files: {
      cert: { path: '/etc/knock-port/tls/cert.pem', namedBy: 'global.tls_cert' },
      key: { path: '/etc/knock-port/tls/key.pem', namedBy: 'global.tls_key' },
    },
    certificate: {
      subject: 'CN=gw.example',
      serial,
      fingerprint256: `FP:${serial}`,
      notBefore: new Date(NOW.getTime() - 30 * DAY),
      notAfter: new Date(NOW.getTime() + daysLeft * DAY + 1000),
    },
    warnings: [],
  };
}

const logger = () => ({ info: vi.fn(), warn: vi.fn(), error: vi.fn() });

describe('ServedCertificate', () => {
  it('a good renewal is served and reported; nothing is degraded', () => {
    const log = logger();
    const served = new ServedCertificate(pair('01', 30), log, () => NOW);
    const serve = vi.fn();
    served.reload(() => pair('02', 90), serve);
    expect(serve).toHaveBeenCalledWith(expect.objectContaining({ certificate: expect.objectContaining({ serial: '02' }) }));
    expect(served.current.certificate.serial).toBe('02');
    expect(served.problems()).toEqual([]);
    expect(served.health()).toEqual({ subject: 'CN=gw.example', serial: '02', fingerprint256: 'FP:02', notAfter: expect.any(String), daysLeft: 90 });
    expect(log.info).toHaveBeenCalledWith(expect.objectContaining({ serial: '02', changed: true }), 'TLS certificate reloaded: new connections get it');
  });

  it('a refused renewal keeps the previous pair serving, logs an error and degrades health until a good one', () => {
    const log = logger();
    const served = new ServedCertificate(pair('01', 30), log, () => NOW);
    const serve = vi.fn();
    served.reload(() => {
      throw new TlsFileError('the key in /etc/knock-port/tls/key.pem does not belong to the certificate');
    }, serve);
    expect(serve).not.toHaveBeenCalled();
    expect(served.current.certificate.serial).toBe('01');
    expect(served.reloadRefused).toBe(true);
    expect(log.error).toHaveBeenCalledWith(
      expect.objectContaining({ serving: expect.objectContaining({ serial: '01' }) }),
      'TLS certificate reload refused; still serving the previous certificate',
    );
    expect(served.problems()).toEqual([
      expect.stringMatching(
        /^TLS: the certificate and key read at the last reload were refused \(the key in .* does not belong to the certificate\); still serving the previous certificate \(serial 01, expires /,
      ),
    ]);
    served.reload(() => pair('03', 90), serve);
    expect(served.reloadRefused).toBe(false);
    expect(served.problems()).toEqual([]);
  });

  it('a pair the server refuses to take counts as refused', () => {
    const served = new ServedCertificate(pair('01', 30), logger(), () => NOW);
    served.reload(
      () => pair('02', 30),
      () => {
        throw new Error('bad context');
      },
    );
    expect(served.current.certificate.serial).toBe('01');
    expect(served.problems()).toHaveLength(1);
  });

  it('under 14 days left: a warning, not a problem; expired: a problem', () => {
    expect(new ServedCertificate(pair('01', 14), logger(), () => NOW).warnings()).toEqual([]);
    const soon = new ServedCertificate(pair('01', 9), logger(), () => NOW);
    expect(soon.warnings()).toEqual([
      expect.stringMatching(/^the TLS certificate \/etc\/knock-port\/tls\/cert\.pem expires on \S+, in 9 days: renew it, then reload/),
    ]);
    expect(soon.problems()).toEqual([]);
    const expired = new ServedCertificate(pair('01', -2), logger(), () => NOW);
    expect(expired.problems()).toEqual([expect.stringMatching(/^TLS: the certificate \/etc\/knock-port\/tls\/cert\.pem expired on /)]);
    expect(expired.warnings()).toEqual([]);
  });
});
