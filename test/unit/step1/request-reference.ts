/**
 * The step-1 HTTP parser as first written (regular expressions over a latin1 string): kept as
 * the oracle the byte-level parser in src/step1/request.ts is checked against, decision by decision.
 */
import type { Step1RequestFailure } from '../../../src/step1/request.js';
import type { KnockFields, ParsedKnock } from './knock-request.js';

const MAX_REQUEST_BYTES = 2048;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+) HTTP\/1\.[01]$/;
// eslint-disable-next-line no-control-regex -- a header value may hold no control character but TAB
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*$/;
const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';
const utf8 = new TextDecoder('utf-8', { fatal: true });

function fail(reason: Step1RequestFailure): ParsedKnock {
  return { ok: false, reason };
}

/** Parses packet[start, end) as a knock for `path` (compared exactly: no prefix, query or case folding). */
export function referenceParseKnockRequest(packet: Buffer, start: number, end: number, path: string): ParsedKnock {
  if (end - start > MAX_REQUEST_BYTES) return fail('too-large');
  // latin1 maps each byte to one char, so string offsets are byte offsets.
  const text = packet.toString('latin1', start, end);
  const lineEnd = text.indexOf('\r\n');
  const requestLine = REQUEST_LINE.exec(lineEnd < 0 ? text : text.slice(0, lineEnd));
  if (!requestLine) return fail(lineEnd < 0 && /^[A-Z]*( |$)/.test(text) ? 'incomplete' : 'not-http');
  if (requestLine[1] !== 'POST') return fail('not-post');
  if (requestLine[2] !== path) return fail('bad-path');
  if (lineEnd < 0) return fail('incomplete');

  const headersEnd = text.indexOf('\r\n\r\n', lineEnd);
  if (headersEnd < 0) return fail('incomplete');
  let contentLength: number | undefined;
  let contentType: string | undefined;
  const headerLines = headersEnd === lineEnd ? [] : text.slice(lineEnd + 2, headersEnd).split('\r\n');
  for (const line of headerLines) {
    const header = HEADER_LINE.exec(line);
    if (!header) return fail('bad-header');
    const name = header[1]!.toLowerCase();
    const value = header[2]!;
    if (name === 'content-length') {
      if (contentLength !== undefined || !/^\d{1,5}$/.test(value)) return fail('bad-header');
      contentLength = Number(value);
    } else if (name === 'content-type') {
      if (contentType !== undefined) return fail('bad-header');
      contentType = value;
    } else if (name === 'transfer-encoding') {
      return fail('bad-header'); // a chunked body is never "Content-Length bytes in this segment"
    }
  }
  if (contentLength === undefined) return fail('no-content-length');
  const bodyStart = headersEnd + 4;
  const bodyLength = text.length - bodyStart;
  if (contentLength > bodyLength) return fail('incomplete');
  if (contentLength < bodyLength) return fail('length-mismatch');
  if (contentType === undefined || contentType.split(';')[0]!.trim().toLowerCase() !== FORM_CONTENT_TYPE) return fail('bad-content-type');
  const fields = parseKnockBody(text.slice(bodyStart));
  return fields ? { ok: true, fields } : fail('bad-body');
}

/** `app`, `access_key` and `otp`/`token` from an urlencoded body; other fields are ignored. */
function parseKnockBody(body: string): KnockFields | undefined {
  const values = new Map<string, string>();
  for (const pair of body.split('&')) {
    const equals = pair.indexOf('=');
    if (equals < 0) return undefined;
    const name = decodeFormComponent(pair.slice(0, equals));
    const value = decodeFormComponent(pair.slice(equals + 1));
    if (name === undefined || value === undefined) return undefined;
    const field = name === 'token' ? 'otp' : name;
    if (field !== 'app' && field !== 'access_key' && field !== 'otp') continue;
    if (values.has(field)) return undefined; // which one would count is ambiguous
    values.set(field, value);
  }
  const app = values.get('app');
  const accessKey = values.get('access_key');
  if (!app || !accessKey) return undefined;
  const otp = values.get('otp');
  return otp === undefined ? { app, accessKey } : { app, accessKey, otp };
}

/**
 * application/x-www-form-urlencoded decoding of one name or value given as latin1 text:
 * `+` is a space, `%XX` a byte, and the bytes must be UTF-8. Undefined when malformed.
 */
function decodeFormComponent(latin1: string): string | undefined {
  if (!/[%+\x80-\xff]/.test(latin1)) return latin1;
  const bytes = Buffer.allocUnsafe(latin1.length);
  let length = 0;
  for (let i = 0; i < latin1.length; i++) {
    const code = latin1.charCodeAt(i);
    if (code === 0x2b) {
      bytes[length++] = 0x20;
    } else if (code === 0x25) {
      const hex = latin1.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes[length++] = parseInt(hex, 16);
      i += 2;
    } else {
      bytes[length++] = code;
    }
  }
  try {
    return utf8.decode(bytes.subarray(0, length));
  } catch {
    return undefined;
  }
}
