/**
 * Property: the byte-level step-1 parser decides exactly as the original regular-expression
 * parser (request-reference.ts) on every input: real knocks, and seeded mutations of them aimed at
 * the bytes the grammar cares about (CR, LF, spaces, colons, escapes, separators, non-ASCII).
 */
import { describe, expect, it } from 'vitest';
import { STEP1_REQUEST_FAILURES, type Step1RequestFailure, requestPathBytes } from '../../../src/step1/request.js';
import { parseKnockRequest } from './knock-request.js';
import { knockRequest } from '../packet/craft.js';
import { referenceParseKnockRequest } from './request-reference.js';
import { seededRandom as random } from './seeded-random.js';

const PATH = '/step-1-k7Qz';
const CASES = 200_000;
const TIME_LIMIT_MS = 30_000;

const FORM = 'application/x-www-form-urlencoded';
const SEEDS: string[] = [
  knockRequest(PATH, 'app=openvpn&access_key=K1-abc'),
  knockRequest(PATH, 'app=ssh&access_key=a%2Bb+c%C3%A9&token=123456'),
  knockRequest(PATH, 'otp=000111&app=ssh&access_key=k&submit=yes'),
  knockRequest(PATH, '%61pp=x&access%5fkey=%E2%82%AC&t%6Fken=1'),
  knockRequest(PATH, 'app=a&access_key=\xc3\xa9t\xc3\xa9&x=\xff'),
  knockRequest(PATH, 'app=a&access_key=%EF%BB%BFk'),
  knockRequest(PATH, 'app=a&access_key=k%2'),
  knockRequest(PATH, 'app=&access_key=k&otp=').replace('Content-Length: 22', 'Content-Length: 00022'),
  `POST ${PATH} HTTP/1.0\r\nContent-Type: ${FORM}; charset=utf-8\r\ncontent-length: 18\r\n\r\napp=a&access_key=k`,
  `POST ${PATH} HTTP/1.1\r\nCONTENT-TYPE:\t ${FORM.toUpperCase()} \t\r\nContent-Length:18 \r\n\r\napp=a&access_key=k`,
  `POST ${PATH} HTTP/1.1\r\nContent-Type: \xa0${FORM}\xa0\r\nContent-Length: 18\r\n\r\napp=a&access_key=k`,
  `POST ${PATH} HTTP/1.1\r\nContent-Length: 18\r\nContent-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\napp=a&access_key=k`,
  `POST ${PATH} HTTP/1.1\r\n\r\n`,
  `GET / HTTP/1.1\r\nHost: x\r\n\r\n`,
  `POST ${PATH} HTTP/1.1`,
  'POST /st',
];

const INTERESTING = Buffer.from('\r\n \t:&=%+;0129AaFfzPOST/-_HTTP.', 'latin1');
/** What surrounds the request in the packet: bytes that would change the outcome if read. */
const AROUND = Buffer.from('0aF\r\n&=', 'latin1');
const HIGH_BYTES = [0x00, 0x08, 0x0b, 0x1f, 0x7f, 0x80, 0xa0, 0xbb, 0xbf, 0xc3, 0xa9, 0xe2, 0xef, 0xff];

function mutate(seed: Buffer, next: () => number): Buffer {
  let bytes = [...seed];
  const pick = () =>
    next() < 0.7
      ? INTERESTING[Math.floor(next() * INTERESTING.length)]!
      : next() < 0.6
        ? HIGH_BYTES[Math.floor(next() * HIGH_BYTES.length)]!
        : Math.floor(next() * 256);
  const edits = 1 + Math.floor(next() * 3);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(next() * (bytes.length + 1));
    const kind = Math.floor(next() * 5);
    if (kind === 0 && at < bytes.length) bytes[at] = pick();
    else if (kind === 1) bytes.splice(at, 0, pick());
    else if (kind === 2) bytes.splice(at, 1);
    else if (kind === 3) bytes = bytes.slice(0, at);
    else if (at < bytes.length) bytes.splice(at, 0, ...bytes.slice(at, at + Math.floor(next() * 8)));
  }
  const out = Buffer.from(bytes);
  return next() < 0.5 ? fixContentLength(out) : out;
}

/** Sets Content-Length to the body's real length, so more mutants reach the body parser. */
function fixContentLength(request: Buffer): Buffer {
  const text = request.toString('latin1');
  const headersEnd = text.indexOf('\r\n\r\n');
  if (headersEnd < 0) return request;
  const body = text.length - headersEnd - 4;
  return Buffer.from(text.replace(/(Content-Length:[ \t]*)\d+/i, `$1${body}`), 'latin1');
}

describe('step-1 HTTP parser against the reference parser', () => {
  it(`decides alike on ${CASES.toLocaleString('en')} mutated requests, at any offset in the packet`, () => {
    const next = random(0x68747470);
    const seeds = SEEDS.map((s) => Buffer.from(s, 'latin1'));
    const pathBytes = requestPathBytes(PATH);
    const reached = new Map<Step1RequestFailure | 'ok', number>();
    const started = Date.now();
    let done = 0;
    for (; done < CASES && Date.now() - started < TIME_LIMIT_MS; done++) {
      const request = mutate(seeds[Math.floor(next() * seeds.length)]!, next);
      // Inside a larger packet: the parser must honour start and end, not the buffer's bounds.
      const before = Math.floor(next() * 60);
      const after = Buffer.from(Array.from({ length: 8 }, () => AROUND[Math.floor(next() * AROUND.length)]!));
      const packet = Buffer.concat([Buffer.alloc(before, 0x0d), request, after]);
      const end = before + request.length;
      const expected = referenceParseKnockRequest(packet, before, end, PATH);
      const actual = parseKnockRequest(packet, before, end, done % 2 === 0 ? pathBytes : PATH);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        expect({ request: request.toString('latin1'), actual }).toEqual({ request: request.toString('latin1'), actual: expected });
      }
      const outcome = expected.ok ? 'ok' : expected.reason;
      reached.set(outcome, (reached.get(outcome) ?? 0) + 1);
    }
    expect(done).toBe(CASES);
    // Every outcome but too-large (no mutant is that long) must be reached, or the test proves little.
    const outcomes: Array<Step1RequestFailure | 'ok'> = ['ok', ...STEP1_REQUEST_FAILURES.filter((f) => f !== 'too-large')];
    for (const outcome of outcomes) expect(reached.get(outcome) ?? 0, outcome).toBeGreaterThan(100);
  }, 60_000);

  it('agrees on oversize requests and on paths no packet can carry', () => {
    const big = Buffer.from(knockRequest(PATH, `app=a&access_key=${'k'.repeat(2100)}`), 'latin1');
    expect(parseKnockRequest(big, 0, big.length, PATH)).toEqual(referenceParseKnockRequest(big, 0, big.length, PATH));
    const request = Buffer.from(knockRequest('/\u0100', 'app=a&access_key=k'), 'latin1');
    expect(parseKnockRequest(request, 0, request.length, '/\u0100')).toEqual({ ok: false, reason: 'bad-path' });
    expect(referenceParseKnockRequest(request, 0, request.length, '/\u0100')).toEqual({ ok: false, reason: 'bad-path' });
  });
});
