/**
 * The bytes of the step-1 request: form encoding as the daemon decodes it, and a size limit
 * so that the whole request fits the one packet the daemon inspects.
 */
import { KnockUsageError } from './errors.js';
import { hostHeader, type Endpoint } from './target.js';

/** Form fields in the order they are sent; undefined fields are left out. */
export type FormFields = ReadonlyArray<readonly [name: string, value: string | undefined]>;

/**
 * Step 1 must fit one TCP segment: the daemon inspects exactly one packet. 1220 bytes fits
 * the smallest MSS any IPv6 path guarantees (1280 - 40 IPv6 - 20 TCP), so no path splits it.
 */
export const MAX_STEP1_REQUEST_BYTES = 1220;

/** application/x-www-form-urlencoded, exactly as an HTML form (and the daemon) encodes it. */
export function encodeForm(fields: FormFields): string {
  const params = new URLSearchParams();
  for (const [name, value] of fields) if (value !== undefined) params.append(name, value);
  return params.toString();
}

/**
 * The whole step-1 request, headers and body, as the bytes of one write(): the daemon
 * sees one segment and checks that `Content-Length` matches the body it carries.
 * `maxBytes` is smaller when the request must fit a SYN (see MAX_SYN_REQUEST_BYTES).
 */
export function buildStep1Request(endpoint: Endpoint, body: string, maxBytes = MAX_STEP1_REQUEST_BYTES): Buffer {
  const bodyBytes = Buffer.from(body, 'utf8');
  const head = [
    `POST ${endpoint.path} HTTP/1.1`,
    `Host: ${hostHeader(endpoint, 80)}`,
    'Content-Type: application/x-www-form-urlencoded',
    `Content-Length: ${bodyBytes.length}`,
    'Connection: close',
    '',
    '',
  ].join('\r\n');
  const request = Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]);
  if (request.length > maxBytes) {
    throw new KnockUsageError(`the step-1 request is ${request.length} bytes, more than fits one packet (${maxBytes}); use a shorter path, app name or key`);
  }
  return request;
}
