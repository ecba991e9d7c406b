/**
 * What the main thread and the step-1 worker threads tell each other, and the layout of each
 * worker's counters in shared memory. Workers never wait for an answer: they post grants and
 * log events, and read their config when the main thread sends one.
 */
import type { LockEvent, LockFactor } from '../auth/lockout.js';
import type { UsedCode } from '../auth/used-codes.js';
import { createHash } from 'node:crypto';
import type { AppConfig, Config, User } from '../config/types.js';
import type { CaptureKind } from '../shared/kinds.js';
import { STEP1_REASONS, STEP1_RESULTS, type KnockMatch, type Step1Decision } from '../step1/decision.js';
import type { SharedStateBuffers } from '../step1/shared-state.js';

/** `workerData` of a step-1 worker. */
export interface WorkerInit {
  /** Counter slot of this worker (see WORKER_COUNTERS). */
  slot: number;
  kind: CaptureKind;
  /** The queue number or log group this worker reads. */
  number: number;
  config: Config;
  shared: SharedStateBuffers;
  counters: SharedArrayBuffer;
  cookieSecret: Uint8Array;
  logRejections: RejectionsPosted;
}

/**
 * Which rejections a worker posts: only what the main thread logs. `judged`: the knocks refused
 * after their sender was proven (the info line); `all` adds decode failures and spoofed segments (debug).
 */
export type RejectionsPosted = 'all' | 'judged' | 'none';

/** A valid knock: the main thread opens the step-2 window, records and logs it. */
export interface GrantEvent {
  ip: string;
  app: string;
  user: string;
  /** When its packet was received: ms since the epoch, sub-millisecond (performance.timeOrigin + now()). */
  receivedAt: number;
  /** credentialFingerprint of the user as the worker's config had it when it granted. */
  credentials: string;
}

/**
 * What a step-1 grant was judged on: the user's step-1 key digest and one-time-code secret.
 * During a reload a worker may still judge with the old config for an instant; the main
 * thread grants only when the current config's user has the same fingerprint, so a rotated
 * key or a newly required code never opens anything (the client's retry is judged anew).
 */
export function credentialFingerprint(user: Pick<User, 'step1Key' | 'step1OtpSecret'>): string {
  return createHash('sha256')
    .update(user.step1Key)
    .update(user.step1OtpSecret ?? '')
    .digest('base64');
}

/**
 * The app and user a worker's grant stands for in the running config, or undefined when the
 * worker judged on a config before a reload and the user's step-1 credentials are no longer the
 * same (a removed user or a rotated key opens nothing). The event crossed a thread boundary, so
 * only names and the fingerprint came with it.
 */
export function currentMatch(grant: GrantEvent, apps: readonly AppConfig[]): KnockMatch | undefined {
  const app = apps.find((a) => a.name === grant.app);
  const user = app?.users.find((u) => u.name === grant.user);
  if (!app || !user || credentialFingerprint(user) !== grant.credentials) return undefined;
  return { app, user };
}

export type RejectionEvent = Pick<Step1Decision, 'src' | 'sport' | 'result' | 'reason'>;

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string; code?: string }
  | {
      type: 'events';
      grants: GrantEvent[];
      rejections: RejectionEvent[];
      locks: LockEvent[];
      refusals: Partial<Record<LockFactor, number>>;
      /** One-time codes claimed: the main thread saves the used-code file and shares them with the cluster. */
      codes: UsedCode[];
    }
  | { type: 'problem'; problem: string };

export type MainMessage = { type: 'config'; config: Config; logRejections: RejectionsPosted } | { type: 'stop' };

/** Float64 counters per worker slot: results, reasons, then capture drops. */
export const COUNTER_RESULTS = 0;
export const COUNTER_REASONS = STEP1_RESULTS.length;
export const COUNTER_KERNEL_DROPS = COUNTER_REASONS + STEP1_REASONS.length;
export const COUNTER_ENOBUFS = COUNTER_KERNEL_DROPS + 1;
export const WORKER_COUNTERS = COUNTER_ENOBUFS + 1;

/**
 * Buffers copied by structured clone arrive as plain Uint8Arrays: the key digests become
 * Buffers again (the auth code compares them as such).
 */
export function reviveConfig(config: Config): Config {
  const buffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    ...config,
    apps: config.apps.map((app) => ({
      ...app,
      users: app.users.map((user) => ({ ...user, step1Key: buffer(user.step1Key), step2Key: buffer(user.step2Key) })),
    })),
  };
}
