/**
 * The wire format of cluster messages (grants, revokes, used one-time codes) and their
 * HMAC-SHA256 signature with the cluster key. Pure: no I/O, the clock is passed in.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { APP_NAME, GATEWAY_NAME, USER_NAME } from '../config/schema.js';
import { KnockPortError } from '../shared/errors.js';
import { canonicalIp } from '../shared/ip.js';
import type { GrantKind } from '../shared/kinds.js';

/** The format's version; a gateway refuses (as malformed) any other (1: signed without the cluster name). */
export const CLUSTER_MESSAGE_VERSION = 2;
/** Longest message accepted, in bytes: a grant is about 400. */
export const MAX_CLUSTER_MESSAGE_BYTES = 2048;
/**
 * How far ahead of this gateway's clock a message may claim to have been issued, and the clock
 * difference with the store beyond which `health` reports a problem. Only expiry depends on
 * clocks (grants and revokes are ordered by the store's sequence), so it is what expiry can bear.
 */
export const MAX_CLOCK_SKEW_MS = 30_000;

/** A step-2 window or a service grant opened on `gateway`, until `expiresAt` (ms since the epoch). */
export interface ClusterGrant {
  kind: GrantKind;
  /** Canonical (shared/ip.ts). */
  ip: string;
  app: string;
  user: string;
  expiresAt: number;
  gateway: string;
  issuedAt: number;
}

/** Grants of `ip` revoked on `gateway`: of one app, or of every app when `app` is absent. */
export interface ClusterRevoke {
  ip: string;
  app?: string;
  gateway: string;
  issuedAt: number;
}

/**
 * A one-time code accepted on `gateway` (auth/used-codes.ts: the secret's scope and the code's
 * time step), used everywhere until `expiresAt` (ms since the epoch, unlike UsedCode's seconds).
 */
export interface ClusterUsedCode {
  scope: string;
  counter: number;
  expiresAt: number;
  gateway: string;
  issuedAt: number;
}

export type ClusterMessage = { type: 'grant'; body: ClusterGrant } | { type: 'revoke'; body: ClusterRevoke } | { type: 'used-code'; body: ClusterUsedCode };

export type ClusterMessageType = ClusterMessage['type'];

/** Why a message was ignored; each is counted, none is ever applied. */
export type ClusterRefusal = 'malformed' | 'unsigned' | 'bad-signature' | 'expired' | 'from-the-future';

export type DecodedClusterMessage = { ok: true; message: ClusterMessage } | { ok: false; reason: ClusterRefusal };

/** A message this gateway was about to send is not one the others would accept: a bug, not an input. */
export class ClusterMessageError extends KnockPortError {}

/** Each body's fields, in the order they are signed; `optional` ones may be absent. */
const FIELDS: Record<ClusterMessageType, readonly { name: string; optional?: boolean }[]> = {
  grant: [{ name: 'kind' }, { name: 'ip' }, { name: 'app' }, { name: 'user' }, { name: 'expiresAt' }, { name: 'gateway' }, { name: 'issuedAt' }],
  revoke: [{ name: 'ip' }, { name: 'app', optional: true }, { name: 'gateway' }, { name: 'issuedAt' }],
  'used-code': [{ name: 'scope' }, { name: 'counter' }, { name: 'expiresAt' }, { name: 'gateway' }, { name: 'issuedAt' }],
};

const ENVELOPE_KEYS = new Set(['v', 'type', 'body', 'sig']);
const SCOPE = /^[0-9a-f]{32}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
/** Separates these signatures from any other use of the cluster key. */
const DOMAIN = 'knock-port cluster message';

/**
 * The key messages are signed with: HMAC-SHA256(cluster key, domain + cluster name). A message
 * signed for another cluster name (another site that shares the key) fails as a bad signature.
 */
export function clusterSigningKey(clusterKey: Buffer, clusterName: string): Buffer {
  return createHmac('sha256', clusterKey).update(`${DOMAIN}\0${clusterName}`).digest();
}

const isTime = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
const matches = (value: unknown, pattern: RegExp): value is string => typeof value === 'string' && pattern.test(value);
const isCanonicalIp = (value: unknown): value is string => typeof value === 'string' && !value.includes('%') && canonicalIp(value) === value;

/** Each field's check; a body is valid when it holds exactly its type's fields and each passes. */
const CHECKS: Record<string, (value: unknown) => boolean> = {
  kind: (value) => value === 'step2' || value === 'service',
  ip: isCanonicalIp,
  app: (value) => matches(value, APP_NAME),
  user: (value) => matches(value, USER_NAME),
  gateway: (value) => matches(value, GATEWAY_NAME),
  scope: (value) => matches(value, SCOPE),
  counter: (value) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0,
  expiresAt: isTime,
  issuedAt: isTime,
};

function isMessageType(value: unknown): value is ClusterMessageType {
  return typeof value === 'string' && Object.hasOwn(FIELDS, value);
}

/** The body as its type's, or undefined: no missing, extra or invalid field; a grant expires after it is issued. */
function checkBody(type: ClusterMessageType, body: unknown): ClusterMessage | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const record = body as Record<string, unknown>;
  const fields = FIELDS[type];
  const names = new Set(fields.map((field) => field.name));
  if (Object.keys(record).some((name) => !names.has(name))) return undefined;
  for (const field of fields) {
    const value = record[field.name];
    if (value === undefined && field.optional) continue;
    if (!CHECKS[field.name]!(value)) return undefined;
  }
  if ('expiresAt' in record && (record.expiresAt as number) <= (record.issuedAt as number)) return undefined;
  return { type, body } as ClusterMessage;
}

/** What is signed: the domain, version, type and every field in a fixed order (an absent one as null). */
function signedText(message: ClusterMessage): string {
  const body = message.body as unknown as Record<string, unknown>;
  return JSON.stringify([DOMAIN, CLUSTER_MESSAGE_VERSION, message.type, ...FIELDS[message.type].map((field) => body[field.name] ?? null)]);
}

function sign(key: Buffer, message: ClusterMessage): Buffer {
  return createHmac('sha256', key).update(signedText(message)).digest();
}

/** Only the type's fields, so that a caller's extra properties are neither sent nor signed. */
function pickBody(message: ClusterMessage): Record<string, unknown> {
  const body = message.body as unknown as Record<string, unknown>;
  return Object.fromEntries(FIELDS[message.type].filter((field) => body[field.name] !== undefined).map((field) => [field.name, body[field.name]]));
}

/** `{"v":1,"type":...,"body":{...},"sig":"<hex HMAC-SHA256>"}`; throws ClusterMessageError on a message others would refuse. */
export function encodeClusterMessage(key: Buffer, message: ClusterMessage): string {
  const checked = isMessageType(message.type) ? checkBody(message.type, pickBody(message)) : undefined;
  if (!checked) throw new ClusterMessageError(`invalid cluster ${String(message.type)} message: a field is missing or out of range`);
  const text = JSON.stringify({ v: CLUSTER_MESSAGE_VERSION, type: checked.type, body: checked.body, sig: sign(key, checked).toString('hex') });
  if (Buffer.byteLength(text) > MAX_CLUSTER_MESSAGE_BYTES)
    throw new ClusterMessageError(`cluster ${checked.type} message over ${MAX_CLUSTER_MESSAGE_BYTES} bytes`);
  return text;
}

/**
 * The message in `text` if it is well formed, signed with `key`, not expired at `now` (ms since the
 * epoch) and not issued more than MAX_CLOCK_SKEW_MS ahead of it; otherwise why not. The signature
 * is compared in constant time.
 */
export function decodeClusterMessage(key: Buffer, text: string, now: number): DecodedClusterMessage {
  if (typeof text !== 'string' || text.length > MAX_CLUSTER_MESSAGE_BYTES || Buffer.byteLength(text) > MAX_CLUSTER_MESSAGE_BYTES) return refused('malformed');
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    return refused('malformed');
  }
  if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) return refused('malformed');
  const { v, type, body, sig } = envelope as Record<string, unknown>;
  if (Object.keys(envelope).some((name) => !ENVELOPE_KEYS.has(name))) return refused('malformed');
  if (v !== CLUSTER_MESSAGE_VERSION || !isMessageType(type)) return refused('malformed');
  const message = checkBody(type, body);
  if (!message) return refused('malformed');
  if (sig === undefined || sig === null || sig === '') return refused('unsigned');
  if (!matches(sig, SIGNATURE)) return refused('bad-signature');
  if (!timingSafeEqual(Buffer.from(sig, 'hex'), sign(key, message))) return refused('bad-signature');
  if (message.body.issuedAt > now + MAX_CLOCK_SKEW_MS) return refused('from-the-future');
  if ('expiresAt' in message.body && message.body.expiresAt <= now) return refused('expired');
  return { ok: true, message };
}

function refused(reason: ClusterRefusal): DecodedClusterMessage {
  return { ok: false, reason };
}
