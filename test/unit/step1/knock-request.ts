/**
 * The step-1 request parser (src/step1/request.ts) with strings out, for tests: the same scanner
 * the inspector runs, its byte ranges copied into strings.
 */
import { type Step1RequestFailure, KnockScan, requestPathBytes, scanKnockRequest } from '../../../src/step1/request.js';

export interface KnockFields {
  app: string;
  accessKey: string;
  otp?: string;
}

export type ParsedKnock = { ok: true; fields: KnockFields } | { ok: false; reason: Step1RequestFailure };

const scan = new KnockScan();

/** The fields of a scan as strings. */
export function fieldsOf(scanned: KnockScan): KnockFields {
  const app = scanned.app.text();
  const accessKey = scanned.accessKey.text();
  return scanned.otp.present ? { app, accessKey, otp: scanned.otp.text() } : { app, accessKey };
}

/**
 * Parses packet[start, end) as a knock for `path` (a string, or `requestPathBytes(path)`),
 * with the fields as strings.
 */
export function parseKnockRequest(packet: Buffer, start: number, end: number, path: string | Buffer): ParsedKnock {
  const pathBytes = typeof path === 'string' ? requestPathBytes(path) : path;
  const failure = scanKnockRequest(packet, start, end, pathBytes, scan);
  return failure === undefined ? { ok: true, fields: fieldsOf(scan) } : { ok: false, reason: failure };
}

/**
 * application/x-www-form-urlencoded decoding of one non-empty name or value given as latin1
 * text, by the scanner itself (as the `app` value of a knock); undefined when malformed.
 */
export function decodeFormComponent(latin1Text: string): string | undefined {
  const body = Buffer.concat([Buffer.from('app=', 'latin1'), Buffer.from(latin1Text, 'latin1'), Buffer.from('&access_key=k', 'latin1')]);
  const head = `POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n`;
  const request = Buffer.concat([Buffer.from(head, 'latin1'), body]);
  const parsed = parseKnockRequest(request, 0, request.length, '/');
  return parsed.ok ? parsed.fields.app : undefined;
}
