/**
 * The record of one grant as the daemon keeps, lists and persists it, and its identity, so that
 * a repeated grant extends the record instead of adding one.
 */
import type { GrantKind } from '../shared/kinds.js';

/**
 * One grant the daemon knows about: the step-2 HTTPS window an IP earned for (app, user) in
 * step 1, or the service grant it earned in step 2. `app`/`user` are null only for grants
 * found live in the kernel on start with no record (unattributed): listed, never trusted.
 */
export interface SessionRecord {
  ip: string;
  app: string | null;
  user: string | null;
  step: GrantKind;
  /** Absolute expiry, milliseconds since the epoch. */
  expiresAt: number;
  /** The cluster gateway that made the grant (docs/cluster.md); absent when not clustered. */
  gateway?: string;
}

/** Identity of a record: a repeated grant for the same key replaces (extends) it. */
export function recordKey(record: Pick<SessionRecord, 'ip' | 'app' | 'user' | 'step'>): string {
  return JSON.stringify([record.step, record.ip, record.app, record.user]);
}

export function secondsLeft(record: SessionRecord, now: number): number {
  return Math.max(0, Math.ceil((record.expiresAt - now) / 1000));
}
