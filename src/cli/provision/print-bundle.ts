/** The client bundle of a user just added, as `user add` and `init` print it. */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { otpauthUri } from '../../auth/totp.js';
import type { Config } from '../../config/types.js';
import { publicStep2Port } from '../../config/types.js';
import type { Terminal } from '../terminal.js';
import { bundleText } from './bundle.js';
import { interfaceAddress } from './init.js';
import type { NewUserSecrets } from './user-file.js';

export interface BundleRequest {
  config: Config;
  app: string;
  user: string;
  secrets: NewUserSecrets;
  /** `--host`; else an address of the external interface, else a placeholder to replace. */
  host?: string;
}

export async function printBundle(terminal: Terminal, request: BundleRequest): Promise<void> {
  const { config, secrets } = request;
  const app = config.apps.find((candidate) => candidate.name === request.app)!;
  const { global } = config;
  const host = request.host ?? interfaceAddress(global.interfaceExt) ?? 'GATEWAY';
  const certificate = selfSignedCertificate(global.tlsCert);
  const input = {
    host,
    step1Port: global.step1Port,
    step2Port: publicStep2Port(global),
    step1Path: global.step1Path,
    step2Path: global.step2Path,
    app: request.app,
    user: request.user,
    step1Key: secrets.step1Key,
    step2Key: secrets.step2Key,
    step2Window: app.step2Duration,
    ...(secrets.totpSecret ? { totpSecret: secrets.totpSecret } : {}),
    ...(certificate ? { selfSignedCertificate: certificate } : {}),
  };
  const qr = secrets.totpSecret
    ? await (await import('qrcode')).default.toString(otpauthUri(secrets.totpSecret, request.user), { type: 'terminal', small: true })
    : undefined;
  terminal.stdout.write(bundleText(input, qr));
}

/** The certificate's PEM when it signed itself (init's), so clients trust exactly it; else undefined. */
function selfSignedCertificate(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    const pem = readFileSync(path, 'utf8');
    const certificate = new X509Certificate(pem);
    return certificate.issuer === certificate.subject && certificate.verify(certificate.publicKey) ? certificate.toString() : undefined;
  } catch {
    return undefined;
  }
}
