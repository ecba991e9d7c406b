/**
 * `<state_dir>/cluster-revokes.json`: every revoke this gateway made or learned, until it no longer
 * covers any grant (the longest grant duration), and whether the store has it yet. A revoke made
 * while the store is unreachable is kept here and retried until the store has it; a restarted
 * gateway reloads every revoke, so a grant another gateway republishes does not reopen here.
 * Written atomically (temporary file, fsync, rename) after every change, one write at a time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomically } from '../sessions/state-file.js';

export const REVOKE_JOURNAL_FILE = 'cluster-revokes.json';
/** Revokes kept at most; the oldest go first beyond it (a bound against a flood of revokes). */
export const MAX_JOURNALED_REVOKES = 65_536;
const FORMAT_VERSION = 1;

export interface JournaledRevoke {
  /** The store's id for it (`<gateway>:<ip>:<app or *>:<issuedAt>`). */
  id: string;
  /** The signed message (message.ts), as published. */
  text: string;
  /** Kept until then (ms since the epoch): after it, no grant it covers is still open anywhere. */
  keepUntil: number;
  /** The store has it (published by this gateway, or received from it). */
  shared: boolean;
  /** The store's sequence number for it (store.ts), once shared. */
  seq?: number;
}

export type JournalLoad = { kind: 'ok'; entries: JournaledRevoke[] } | { kind: 'missing' } | { kind: 'corrupt'; reason: string };

function isEntry(value: unknown): value is JournaledRevoke {
  if (value === null || typeof value !== 'object') return false;
  const o = value as Record<string, unknown>;
  return (
    typeof o.id === 'string' &&
    o.id !== '' &&
    typeof o.text === 'string' &&
    Number.isSafeInteger(o.keepUntil) &&
    typeof o.shared === 'boolean' &&
    (o.seq === undefined || Number.isSafeInteger(o.seq))
  );
}

/** The journal's text read back; pure, for tests and for load. */
export function parseRevokeJournal(text: string): JournalLoad {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { kind: 'corrupt', reason: (err as Error).message };
  }
  if (value === null || typeof value !== 'object') return { kind: 'corrupt', reason: 'not an object' };
  const o = value as Record<string, unknown>;
  if (o.version !== FORMAT_VERSION) return { kind: 'corrupt', reason: `unknown version ${String(o.version)}` };
  if (!Array.isArray(o.revokes) || !o.revokes.every(isEntry)) return { kind: 'corrupt', reason: 'a revoke entry is malformed' };
  return { kind: 'ok', entries: o.revokes };
}

export function serializeRevokeJournal(entries: readonly JournaledRevoke[]): string {
  return `${JSON.stringify({ version: FORMAT_VERSION, revokes: entries })}\n`;
}

export class RevokeJournal {
  private readonly entries = new Map<string, JournaledRevoke>();
  private writing: Promise<void> = Promise.resolve();
  /** The write waiting for the current one, if any. */
  private queued: Promise<void> | undefined;

  /** `loaded`: what the file held (already read); entries past keepUntil are dropped. An empty `path` keeps it in memory only. */
  constructor(
    readonly path: string,
    loaded: readonly JournaledRevoke[],
    private readonly now: () => number = Date.now,
  ) {
    for (const entry of loaded) if (entry.keepUntil > now()) this.entries.set(entry.id, { ...entry });
  }

  /**
   * Reads `<stateDir>/cluster-revokes.json` (synchronously: once, at start). A missing file is an
   * empty journal; a corrupt one is reported through `onCorrupt` and replaced on the next write.
   */
  static open(stateDir: string, onCorrupt: (reason: string) => void, now: () => number = Date.now): RevokeJournal {
    const path = join(stateDir, REVOKE_JOURNAL_FILE);
    let text: string | undefined;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onCorrupt((err as Error).message);
    }
    const load = text === undefined ? ({ kind: 'missing' } as const) : parseRevokeJournal(text);
    if (load.kind === 'corrupt') onCorrupt(load.reason);
    return new RevokeJournal(path, load.kind === 'ok' ? load.entries : [], now);
  }

  /** Every revoke still kept, oldest first. */
  list(): JournaledRevoke[] {
    this.prune();
    return [...this.entries.values()].map((entry) => ({ ...entry }));
  }

  /** Revokes the store does not have yet. */
  pending(): JournaledRevoke[] {
    return this.list().filter((entry) => !entry.shared);
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Adds (or replaces) a revoke and waits until the file holds it. A shared entry is never made pending again. */
  async record(entry: JournaledRevoke): Promise<void> {
    const known = this.entries.get(entry.id);
    const seq = entry.seq ?? known?.seq;
    this.entries.set(entry.id, {
      ...entry,
      shared: entry.shared || (known?.shared ?? false),
      keepUntil: Math.max(entry.keepUntil, known?.keepUntil ?? 0),
      ...(seq !== undefined ? { seq } : {}),
    });
    while (this.entries.size > MAX_JOURNALED_REVOKES) this.entries.delete(this.entries.keys().next().value as string);
    await this.save();
  }

  /** The store has it now (under `seq`, when known); waits until the file says so. */
  async markShared(id: string, seq?: number): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry || entry.shared) return;
    entry.shared = true;
    if (seq !== undefined) entry.seq = seq;
    await this.save();
  }

  private prune(): void {
    const now = this.now();
    for (const [id, entry] of this.entries) if (entry.keepUntil <= now) this.entries.delete(id);
  }

  /**
   * One write at a time, each with the whole journal as it is when the write starts; changes made
   * while one is waiting share it (a burst of revokes is one write). None without a path (memory only).
   */
  private save(): Promise<void> {
    if (this.path === '') return Promise.resolve();
    if (this.queued) return this.queued;
    const next = this.writing.then(() => {
      this.queued = undefined;
      this.prune();
      return writeFileAtomically(this.path, serializeRevokeJournal([...this.entries.values()]), 'cluster revoke journal');
    });
    // A failed write does not stop the next one; the callers of this one still see it fail.
    this.queued = next;
    this.writing = next.catch(() => undefined);
    return next;
  }
}
