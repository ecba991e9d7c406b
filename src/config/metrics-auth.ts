/**
 * What protects the metrics endpoint, once policy.ts accepted the keys: the bearer token read
 * from `metrics_token_file` (kept as its SHA-256 only) and the TLS files, read when it starts.
 */
import { digestKey } from './key-digest.js';
import type { PathIssue } from './issues.js';
import type { GlobalSection } from './schema.js';
import { readSecretFile } from './secret-file.js';
import type { MetricsAuth } from './types.js';
import { Refusal } from './values.js';

/** Shorter tokens could be guessed by whoever reaches the endpoint. */
export const MIN_METRICS_TOKEN_LENGTH = 16;

export interface MetricsAuthRead {
  /** Undefined when nothing protects the endpoint (loopback), or when the token could not be had (see errors). */
  auth?: MetricsAuth;
  errors: PathIssue[];
  warnings: PathIssue[];
}

export function readMetricsAuth(global: GlobalSection): MetricsAuthRead {
  const read: MetricsAuthRead = { errors: [], warnings: [] };
  const { metrics_token_file: tokenFile, metrics_tls_cert: cert, metrics_tls_key: key, metrics_tls_client_ca: clientCa } = global;
  const tls = cert !== undefined && key !== undefined ? { cert, key, ...(clientCa !== undefined ? { clientCa } : {}) } : undefined;
  if (tokenFile === undefined) {
    if (tls) read.auth = { tls };
    return read;
  }
  const path = ['global', 'metrics_token_file'];
  const token = readSecretFile(tokenFile, 'the metrics token file', path, read.warnings);
  if (token instanceof Refusal) read.errors.push({ path, message: token.message });
  else if (token.length < MIN_METRICS_TOKEN_LENGTH || /\s/.test(token)) {
    read.errors.push({
      path,
      message: `the metrics token file must hold one token of at least ${MIN_METRICS_TOKEN_LENGTH} characters and no spaces; make one with: openssl rand -hex 32 > ${tokenFile}`,
    });
  } else read.auth = { tokenDigest: digestKey(token), ...(tls ? { tls } : {}) };
  return read;
}
