// Pure parts of the shared cluster store: key naming, the announcement envelope, the reconnect
// backoff schedule and chunking. No I/O here, so all of it is unit-tested without a server.

/** What the store keeps and announces; the texts themselves are opaque (signed by message.ts). */
export type ClusterEntryKind = 'grant' | 'revoke' | 'used-code';

export const ENTRY_KINDS: readonly ClusterEntryKind[] = ['grant', 'revoke', 'used-code'];

export interface ClusterEntry {
  kind: ClusterEntryKind;
  id: string;
  text: string;
  /** The store's sequence number of a grant or revoke (seqKey): their order, whatever the gateways' clocks. */
  seq?: number;
}

/**
 * `<prefix>seq`: the last sequence number the store gave a grant or revoke. Never expires; the
 * scripts take max(last + 1, the store's TIME in microseconds), so a lost key does not restart it at 1.
 */
export function seqKey(prefix: string): string {
  return `${prefix}seq`;
}

/**
 * `<prefix>revoked:<ip>`: a hash, app (or `*`) -> the sequence number of the address's latest
 * revoke, kept as long as the revoke: the grant script refuses a grant older than it.
 */
export function revokedKey(prefix: string, ip: string): string {
  return `${prefix}revoked:${ip}`;
}

/**
 * A grant's or revoke's stored value: `<seq> <signed text>` (the text is JSON, so it starts with
 * '{'). Used codes are stored as the bare text. The sequence is the store's, outside the signature.
 */
export function sequencedValue(seq: number, text: string): string {
  return `${seq} ${text}`;
}

/** The text and sequence of a stored value (sequencedValue); a bare text has no sequence. */
export function parseStoredValue(value: string): { text: string; seq?: number } {
  const match = /^(\d{1,16}) /.exec(value);
  if (!match) return { text: value };
  return { text: value.slice(match[0].length), seq: Number(match[1]) };
}

/** `<prefix><kind>:<id>`, e.g. `knock-port:grant:4f2a`. The id may itself contain ':'. */
export function entryKey(prefix: string, kind: ClusterEntryKind, id: string): string {
  return `${prefix}${kind}:${id}`;
}

/**
 * `<prefix>grant-index:<ip>`: a hash of the address's grant keys (-> app), for revokes to delete
 * them. Not an entry kind: a snapshot skips it.
 */
export function grantIndexKey(prefix: string, ip: string): string {
  return `${prefix}grant-index:${ip}`;
}

/** The pub/sub channel announcements go to: `<prefix>announce` (not a key: SCAN never sees it). */
export function announceChannel(prefix: string): string {
  return `${prefix}announce`;
}

/** The kind and id a key names, or undefined for a key under the prefix that is not an entry. */
export function parseEntryKey(prefix: string, key: string): { kind: ClusterEntryKind; id: string } | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const colon = rest.indexOf(':');
  if (colon <= 0) return undefined;
  const kind = rest.slice(0, colon);
  const id = rest.slice(colon + 1);
  if (!(ENTRY_KINDS as readonly string[]).includes(kind) || id === '') return undefined;
  return { kind: kind as ClusterEntryKind, id };
}

/** `text` with Redis glob metacharacters (`* ? [ ] \`) escaped, for SCAN MATCH on a literal prefix. */
export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** `items` in consecutive slices of at most `size` (size >= 1). */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunk size must be a positive integer, got ${size}`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface BackoffOptions {
  /** The first delay before jitter. */
  baseMs: number;
  /** No delay exceeds this, jitter included. */
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 100, capMs: 10_000 };

/**
 * Delay before reconnect attempt `attempt` (1-based): exponential (base * 2^(attempt-1)), capped,
 * with "equal jitter" (half fixed, half random) so gateways that lost the same server do not all
 * come back in lockstep, while no delay drops below half the schedule's value.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(attempt));
  // 2^30 already exceeds any sensible cap; bounding the exponent keeps the arithmetic finite.
  const exp = Math.min(options.capMs, options.baseMs * 2 ** Math.min(n - 1, 30));
  const half = exp / 2;
  return Math.round(half + half * Math.min(Math.max(random(), 0), 1));
}

/** The store's own framing of an announcement; `text` is the caller's opaque message. */
export interface Announcement {
  /** Gateway that published it: a gateway ignores its own. */
  gateway: string;
  kind: ClusterEntryKind;
  id: string;
  text: string;
  /** Publisher's clock when published (ms since epoch), for the lag figure. */
  publishedAtMs: number;
  /** The store's sequence number (grants and revokes), added by the script that stores it. */
  seq?: number;
}

export function encodeAnnouncement(a: Announcement): string {
  return JSON.stringify({ v: 1, g: a.gateway, k: a.kind, i: a.id, t: a.text, p: a.publishedAtMs, ...(a.seq !== undefined ? { q: a.seq } : {}) });
}

/**
 * The announcement without its closing brace: the store's script appends `,"q":<seq>}` once it
 * has given the entry its sequence number (decodeAnnouncement reads it back).
 */
export function announcementHead(a: Omit<Announcement, 'seq'>): string {
  return encodeAnnouncement(a).slice(0, -1);
}

/** The announcement in `raw`, or undefined when it is not one this version understands. */
export function decodeAnnouncement(raw: string): Announcement | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const o = value as Record<string, unknown>;
  if (o.v !== 1 || typeof o.g !== 'string' || typeof o.i !== 'string' || typeof o.t !== 'string' || typeof o.p !== 'number') return undefined;
  if (typeof o.k !== 'string' || !(ENTRY_KINDS as readonly string[]).includes(o.k) || o.i === '') return undefined;
  if (o.q !== undefined && !(typeof o.q === 'number' && Number.isSafeInteger(o.q) && o.q > 0)) return undefined;
  return { gateway: o.g, kind: o.k as ClusterEntryKind, id: o.i, text: o.t, publishedAtMs: o.p, ...(o.q !== undefined ? { seq: o.q } : {}) };
}
