/**
 * The step-1 request: exactly one complete `POST <path> HTTP/1.x` request in one TCP
 * segment, urlencoded body with `app`, `access_key` and optionally `otp` (alias `token`).
 * Anything else is refused with a specific reason; nothing here looks at credentials.
 *
 * Parsed byte by byte over the packet, without copying it into a string: an attacker who
 * completed a handshake can flood this path, so `scanKnockRequest` allocates nothing at all. It
 * leaves the fields as byte ranges in a reused `KnockScan` (values needing `%XX`/`+` decoding
 * are decoded into the scan's own buffer).
 */

/** Largest payload considered: a knock is ~200 bytes; more is not a client we serve. */
export const MAX_REQUEST_BYTES = 2048;

/** Why a step-1 payload is not a well-formed knock request, in the order the scanner checks. */
export const STEP1_REQUEST_FAILURES = [
  'too-large',
  'not-http',
  'not-post',
  'bad-path',
  'incomplete',
  'bad-header',
  'no-content-length',
  'length-mismatch',
  'bad-content-type',
  'bad-body',
] as const;
export type Step1RequestFailure = (typeof STEP1_REQUEST_FAILURES)[number];

const EMPTY = Buffer.alloc(0);

/**
 * Where one form value is: bytes[start, end), the packet itself when the value needed no
 * decoding (then it is ASCII), else the scan's decoding buffer (then it is well-formed UTF-8).
 * Either way the bytes are the UTF-8 encoding of the value as a string.
 */
export class FieldRange {
  bytes: Buffer = EMPTY;
  start = 0;
  end = 0;
  present = false;

  get length(): number {
    return this.end - this.start;
  }

  point(bytes: Buffer, start: number, end: number): void {
    this.bytes = bytes;
    this.start = start;
    this.end = end;
    this.present = true;
  }

  clear(): void {
    this.bytes = EMPTY;
    this.start = 0;
    this.end = 0;
    this.present = false;
  }

  /** The value as a string (allocates: only for callers off the per-packet path, or a one-time code). */
  text(): string {
    return this.bytes.toString('utf8', this.start, this.end);
  }
}

/**
 * The fields of one knock as byte ranges, filled in place by `scanKnockRequest`: one scan per
 * inspector, reused for every packet, so parsing allocates nothing. Valid until the next scan
 * (a range may point into the packet).
 */
export class KnockScan {
  readonly app = new FieldRange();
  readonly accessKey = new FieldRange();
  /** `otp`, or its alias `token`. */
  readonly otp = new FieldRange();
  /** Decoded components, one after another; a component never decodes longer than it is. */
  readonly decoded = Buffer.alloc(MAX_REQUEST_BYTES);
  /** Bytes of `decoded` holding kept values. */
  decodedLength = 0;
  /** End of the component decoded last (kept or not). */
  decodedEnd = 0;

  reset(): void {
    this.app.clear();
    this.accessKey.clear();
    this.otp.clear();
    this.decodedLength = 0;
    this.decodedEnd = 0;
  }
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const AMPERSAND = 0x26;
const EQUALS = 0x3d;
const PLUS = 0x2b;
const PERCENT = 0x25;

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const POST = latin1('POST');
/** The request line's end, after the target: ` HTTP/1.` then `0` or `1`. */
const HTTP_VERSION_PREFIX = latin1(' HTTP/1.');
const HTTP_VERSION_LENGTH = HTTP_VERSION_PREFIX.length + 1;
const CONTENT_LENGTH = latin1('content-length');
const CONTENT_TYPE = latin1('content-type');
const TRANSFER_ENCODING = latin1('transfer-encoding');
const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';
const FORM_CONTENT_TYPE_BYTES = latin1(FORM_CONTENT_TYPE);
const FIELD_APP = latin1('app');
const FIELD_ACCESS_KEY = latin1('access_key');
const FIELD_OTP = latin1('otp');
const FIELD_TOKEN = latin1('token');

/** RFC 9110 `tchar`: the bytes of a method or a header name. */
const TOKEN_BYTE = byteTable((b) => /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(String.fromCharCode(b)));
/** Bytes a header value may hold: no control character but tab. */
const FIELD_VALUE_BYTE = byteTable((b) => b === HT || (b >= 0x20 && b !== 0x7f));
/** Bytes that make a form component need decoding: `+`, `%`, and non-ASCII (checked as UTF-8). */
const NEEDS_DECODING = byteTable((b) => b === PLUS || b === PERCENT || b >= 0x80);
/** Each byte with ASCII capitals in lowercase: one lookup instead of a range test per byte. */
const ASCII_LOWERCASE = Uint8Array.from({ length: 256 }, (_, b) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b));
/** Value of a hexadecimal digit, or -1. */
const HEX_VALUE = Int8Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b);
  return /[0-9A-Fa-f]/.test(c) ? parseInt(c, 16) : -1;
});

/**
 * The bytes a request target must equal to match `path`. Characters beyond latin1 can never
 * appear in a packet's target, so such a path gets an empty pattern, which no target matches.
 */
export function requestPathBytes(path: string): Buffer {
  // eslint-disable-next-line no-control-regex -- the range is all of Latin-1, NUL included
  return /[^\x00-\xff]/.test(path) ? Buffer.alloc(0) : latin1(path);
}

/**
 * Parses packet[start, end) as a knock for the request target `pathBytes` (compared exactly: no
 * prefix, query or case folding) without allocating: fills `scan` with where the fields are and
 * returns undefined, or returns why the request is refused (`scan` then holds nothing usable).
 */
export function scanKnockRequest(packet: Buffer, start: number, end: number, pathBytes: Buffer, scan: KnockScan): Step1RequestFailure | undefined {
  if (end - start > MAX_REQUEST_BYTES) return 'too-large';
  const lineEnd = indexOfCrlf(packet, start, end);
  const lineStop = lineEnd < 0 ? end : lineEnd;
  const methodEnd = requestLineMethodEnd(packet, start, lineStop);
  if (methodEnd < 0) return lineEnd < 0 && mayBeRequestLineStart(packet, start, end) ? 'incomplete' : 'not-http';
  if (!rangeEquals(packet, start, methodEnd, POST)) return 'not-post';
  if (!rangeEquals(packet, methodEnd + 1, lineStop - HTTP_VERSION_LENGTH, pathBytes)) return 'bad-path';
  if (lineEnd < 0) return 'incomplete';

  const headersEnd = indexOfHeadersEnd(packet, lineEnd, end);
  if (headersEnd < 0) return 'incomplete';
  const headers = readHeaders(packet, lineEnd, headersEnd);
  if (headers === undefined) return 'bad-header';
  if (headers.contentLength < 0) return 'no-content-length';
  const bodyStart = headersEnd + 4;
  const bodyLength = end - bodyStart;
  if (headers.contentLength > bodyLength) return 'incomplete';
  if (headers.contentLength < bodyLength) return 'length-mismatch';
  if (!isFormContentType(packet, headers.contentTypeStart, headers.contentTypeEnd)) return 'bad-content-type';
  return scanKnockBody(packet, bodyStart, end, scan) ? undefined : 'bad-body';
}

/**
 * Where the method of `METHOD SP TARGET SP HTTP/1.[01]` in packet[start, end) ends (the first
 * space), or -1 when the line is not of that form: a non-empty token method, a non-empty
 * target without spaces, and the version.
 */
function requestLineMethodEnd(packet: Buffer, start: number, end: number): number {
  let methodEnd = start;
  while (methodEnd < end && TOKEN_BYTE[packet[methodEnd]!] === 1) methodEnd++;
  if (methodEnd === start || methodEnd >= end || packet[methodEnd] !== SP) return -1;
  const versionStart = end - HTTP_VERSION_LENGTH;
  if (versionStart <= methodEnd + 1) return -1;
  if (!rangeEquals(packet, versionStart, end - 1, HTTP_VERSION_PREFIX)) return -1;
  const minor = packet[end - 1];
  if (minor !== 0x30 && minor !== 0x31) return -1;
  for (let i = methodEnd + 1; i < versionStart; i++) if (packet[i] === SP) return -1;
  return methodEnd;
}

/** Capital letters then a space or the end: the start of a request line cut short. */
function mayBeRequestLineStart(packet: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && packet[i]! >= 0x41 && packet[i]! <= 0x5a) i++;
  return i === end || packet[i] === SP;
}

interface Headers {
  /** -1 when absent. */
  contentLength: number;
  /** Content-Type's value (trimmed), or -1/-1 when absent. */
  contentTypeStart: number;
  contentTypeEnd: number;
}

const scratchHeaders: Headers = { contentLength: -1, contentTypeStart: -1, contentTypeEnd: -1 };

/**
 * The header lines between the request line's CRLF at `lineEnd` and the blank line at
 * `headersEnd`; undefined when one is malformed, repeated where it must not be, or says the
 * body is chunked (a chunked body is never "Content-Length bytes in this segment").
 */
function readHeaders(packet: Buffer, lineEnd: number, headersEnd: number): Headers | undefined {
  // One object for every call: the result is read before the next request is parsed.
  const headers = scratchHeaders;
  headers.contentLength = -1;
  headers.contentTypeStart = -1;
  headers.contentTypeEnd = -1;
  if (headersEnd === lineEnd) return headers;
  let lineStart = lineEnd + 2;
  for (;;) {
    let nameEnd = lineStart;
    while (nameEnd < headersEnd && TOKEN_BYTE[packet[nameEnd]!] === 1) nameEnd++;
    if (nameEnd === lineStart || nameEnd >= headersEnd || packet[nameEnd] !== COLON) return undefined;
    // The value runs to the next CRLF (or the blank line); CR and LF are not value bytes.
    let lineStop = nameEnd + 1;
    // One table lookup per value byte; only a non-value byte needs a second look (CR of CRLF ends the line).
    while (lineStop < headersEnd) {
      const byte = packet[lineStop]!;
      if (FIELD_VALUE_BYTE[byte] === 1) lineStop++;
      else if (byte === CR && lineStop + 1 < headersEnd && packet[lineStop + 1] === LF) break;
      else return undefined;
    }
    let valueStart = nameEnd + 1;
    let valueEnd = lineStop;
    while (valueStart < valueEnd && isBlank(packet[valueStart]!)) valueStart++;
    while (valueEnd > valueStart && isBlank(packet[valueEnd - 1]!)) valueEnd--;
    switch (knownHeader(packet, lineStart, nameEnd)) {
      case CONTENT_LENGTH:
        if (headers.contentLength >= 0) return undefined;
        headers.contentLength = readContentLength(packet, valueStart, valueEnd);
        if (headers.contentLength < 0) return undefined;
        break;
      case CONTENT_TYPE:
        if (headers.contentTypeStart >= 0) return undefined;
        headers.contentTypeStart = valueStart;
        headers.contentTypeEnd = valueEnd;
        break;
      case TRANSFER_ENCODING:
        return undefined;
    }
    if (lineStop >= headersEnd) return headers;
    lineStart = lineStop + 2;
  }
}

/** The one of the headers that matter that packet[start, end) names, in any case. */
function knownHeader(packet: Buffer, start: number, end: number): Buffer | undefined {
  const candidate =
    end - start === CONTENT_LENGTH.length
      ? CONTENT_LENGTH
      : end - start === CONTENT_TYPE.length
        ? CONTENT_TYPE
        : end - start === TRANSFER_ENCODING.length
          ? TRANSFER_ENCODING
          : undefined;
  return candidate !== undefined && equalsIgnoringAsciiCase(packet, start, end, candidate) ? candidate : undefined;
}

/** 1 to 5 decimal digits, or -1. */
function readContentLength(packet: Buffer, start: number, end: number): number {
  if (end <= start || end - start > 5) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = packet[i]! - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** The form media type, any case, optionally followed by parameters such as a charset. */
function isFormContentType(packet: Buffer, start: number, end: number): boolean {
  if (start < 0) return false;
  if (equalsIgnoringAsciiCase(packet, start, end, FORM_CONTENT_TYPE_BYTES)) return true;
  // Rare shapes (parameters, odd spacing): the media type as text, trimmed like String#trim.
  return packet.toString('latin1', start, end).split(';')[0]!.trim().toLowerCase() === FORM_CONTENT_TYPE;
}

/** Which of the scan's fields a form name stands for. */
const enum FormField {
  Malformed = -1,
  Ignored = 0,
  App = 1,
  AccessKey = 2,
  Otp = 3,
}

/**
 * Fills `scan` from the urlencoded body packet[start, end); false when the body is malformed: a
 * pair without `=`, a name or value that does not decode, a repeated field, or `app` or
 * `access_key` missing or empty.
 */
function scanKnockBody(packet: Buffer, start: number, end: number, scan: KnockScan): boolean {
  scan.reset();
  let pairStart = start;
  for (;;) {
    // One pass over the pair: where it ends, its first `=`, and whether name or value need decoding.
    let pairEnd = pairStart;
    let equals = -1;
    let nameNeedsDecoding = false;
    let valueNeedsDecoding = false;
    for (; pairEnd < end; pairEnd++) {
      const byte = packet[pairEnd]!;
      if (byte === AMPERSAND) break;
      if (byte === EQUALS && equals < 0) equals = pairEnd;
      else if (NEEDS_DECODING[byte] === 1) {
        if (equals < 0) nameNeedsDecoding = true;
        else valueNeedsDecoding = true;
      }
    }
    if (equals < 0) return false;
    const field = formFieldOf(packet, pairStart, equals, nameNeedsDecoding, scan);
    if (field === FormField.Malformed) return false;
    // Every value must decode, even an ignored field's, as a whole-body decode would require.
    if (field === FormField.Ignored) {
      if (valueNeedsDecoding && decodeComponent(packet, equals + 1, pairEnd, scan) < 0) return false;
    } else {
      const range = field === FormField.App ? scan.app : field === FormField.AccessKey ? scan.accessKey : scan.otp;
      // A repeated field is refused: which one would count is ambiguous.
      if (range.present || !setValue(range, packet, equals + 1, pairEnd, valueNeedsDecoding, scan)) return false;
    }
    if (pairEnd === end) break;
    pairStart = pairEnd + 1;
  }
  return scan.app.length > 0 && scan.accessKey.length > 0;
}

/** Points `range` at the value packet[start, end), decoded into the scan's buffer when it needs it. */
function setValue(range: FieldRange, packet: Buffer, start: number, end: number, needsDecoding: boolean, scan: KnockScan): boolean {
  if (!needsDecoding) {
    range.point(packet, start, end);
    return true;
  }
  const valueStart = decodeComponent(packet, start, end, scan);
  if (valueStart < 0) return false;
  range.point(scan.decoded, valueStart, scan.decodedEnd);
  scan.decodedLength = scan.decodedEnd;
  return true;
}

/** The field a form name packet[start, end) stands for (`token` is `otp`). */
function formFieldOf(packet: Buffer, start: number, end: number, needsDecoding: boolean, scan: KnockScan): FormField {
  if (!needsDecoding) return knownField(packet, start, end);
  const nameStart = decodeComponent(packet, start, end, scan);
  return nameStart < 0 ? FormField.Malformed : knownField(scan.decoded, nameStart, scan.decodedEnd);
}

function knownField(bytes: Buffer, start: number, end: number): FormField {
  if (rangeEquals(bytes, start, end, FIELD_APP)) return FormField.App;
  if (rangeEquals(bytes, start, end, FIELD_ACCESS_KEY)) return FormField.AccessKey;
  if (rangeEquals(bytes, start, end, FIELD_OTP) || rangeEquals(bytes, start, end, FIELD_TOKEN)) return FormField.Otp;
  return FormField.Ignored;
}

/**
 * Form decoding of packet[start, end) into out[at..]: `+` is a space, `%XX` a byte. Returns the
 * end of what was written, or -1 for a broken escape. `out` must hold end - start bytes from `at`.
 */
function percentDecodeInto(packet: Buffer, start: number, end: number, out: Buffer, at: number): number {
  let length = at;
  for (let i = start; i < end; i++) {
    const byte = packet[i]!;
    if (byte === PLUS) {
      out[length++] = SP;
    } else if (byte === PERCENT) {
      const high = i + 2 < end ? HEX_VALUE[packet[i + 1]!]! : -1;
      const low = i + 2 < end ? HEX_VALUE[packet[i + 2]!]! : -1;
      if (high < 0 || low < 0) return -1;
      out[length++] = (high << 4) | low;
      i += 2;
    } else {
      out[length++] = byte;
    }
  }
  return length;
}

/**
 * Decodes the form component packet[start, end) into `scan.decoded` after the values kept so
 * far (`+` is a space, `%XX` a byte; the bytes must be UTF-8). Returns where the text starts
 * (after a leading byte order mark, which a UTF-8 decoder drops) with its end in
 * `scan.decodedEnd`, or -1 when malformed. Nothing is kept until the caller advances
 * `scan.decodedLength`.
 */
function decodeComponent(packet: Buffer, start: number, end: number, scan: KnockScan): number {
  const out = scan.decoded;
  const from = scan.decodedLength;
  const length = percentDecodeInto(packet, start, end, out, from);
  if (length < 0 || !isWellFormedUtf8(out, from, length)) return -1;
  scan.decodedEnd = length;
  return from + bomLength(out, from, length);
}

/** A leading UTF-8 byte order mark, which a UTF-8 decoder drops: 3 bytes, or 0. */
function bomLength(bytes: Buffer, start: number, end: number): number {
  return end - start >= 3 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf ? 3 : 0;
}

/**
 * True when bytes[start, end) is well-formed UTF-8 (Unicode Table 3-7): no overlong forms, no
 * surrogates, nothing above U+10FFFF, no truncated sequence. Exactly what a fatal decoder accepts.
 */
export function isWellFormedUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let count: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) count = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      count = 2;
      if (lead === 0xe0) low = 0xa0;
      else if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      count = 3;
      if (lead === 0xf0) low = 0x90;
      else if (lead === 0xf4) high = 0x8f;
    } else return false;
    if (i + count >= end) return false; // cut short
    const second = bytes[i + 1]!;
    if (second < low || second > high) return false;
    for (let k = 2; k <= count; k++) {
      const next = bytes[i + k]!;
      if (next < 0x80 || next > 0xbf) return false;
    }
    i += count + 1;
  }
  return true;
}

function isBlank(byte: number): boolean {
  return byte === SP || byte === HT;
}

/** True when packet[start, end) holds exactly `expected`. */
function rangeEquals(packet: Buffer, start: number, end: number, expected: Buffer): boolean {
  if (end - start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (packet[start + i] !== expected[i]) return false;
  return true;
}

/** Like rangeEquals, with ASCII letters of packet[start, end) taken in lowercase (`expected` is lowercase). */
function equalsIgnoringAsciiCase(packet: Buffer, start: number, end: number, expected: Buffer): boolean {
  if (end - start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) {
    if (ASCII_LOWERCASE[packet[start + i]!] !== expected[i]) return false;
  }
  return true;
}

/** First CRLF in packet[start, end) (both bytes inside), or -1. */
function indexOfCrlf(packet: Buffer, start: number, end: number): number {
  for (let i = start; i + 1 < end; i++) if (packet[i] === CR && packet[i + 1] === LF) return i;
  return -1;
}

/** First CRLFCRLF at or after `from` in packet[, end), or -1. */
function indexOfHeadersEnd(packet: Buffer, from: number, end: number): number {
  let i = from;
  while (i + 3 < end) {
    const last = packet[i + 3];
    if (last === LF) {
      if (packet[i] === CR && packet[i + 1] === LF && packet[i + 2] === CR) return i;
      i++;
    } else if (last === CR) {
      i++;
    } else {
      i += 4; // no match can cover a byte that is neither CR nor LF
    }
  }
  return -1;
}

function byteTable(member: (byte: number) => boolean): Uint8Array {
  return Uint8Array.from({ length: 256 }, (_, b) => (member(b) ? 1 : 0));
}
