/**
 * The daemon's mirror of its live grants (the kernel enforces expiry): step 2 finds its windows
 * here, the control socket lists and revokes them; saved to state_dir, bursts written once.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Grant } from '../firewall/types.js';
import type { Logger } from '../shared/log.js';
import { reconcile } from './reconcile.js';
import { recordKey, type SessionRecord } from './record.js';
import { readStateFile, setAside, SessionStateError, STATE_FILE_NAME, writeStateFile } from './state-file.js';
import type { GrantKind, Step2Window } from '../shared/kinds.js';
import { errorFields } from '../shared/errors.js';

export interface SessionStoreOptions {
  stateDir: string;
  logger: Logger;
  /** A burst of changes within this delay is written once (default 250 ms). */
  saveDelayMs?: number;
  now?: () => number;
}

/**
 * The daemon's bookkeeping of grants, one record per (ip, app, user, step), persisted to
 * `<state_dir>/sessions.json`. The kernel enforces expiry; this store only mirrors it so
 * that step 2 can check the window and operators can list and revoke.
 */
export class SessionStore {
  /** Records by IP, then by record key: step 2 and revoke look at one address only. */
  private readonly byIp = new Map<string, Map<string, SessionRecord>>();
  private readonly path: string;
  private readonly logger: Logger;
  private readonly saveDelayMs: number;
  private readonly now: () => number;
  private dirty = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private lastWriteError: unknown;
  /** How long the last write took (ms): with many grants a write costs more than the save delay. */
  private lastWriteMs = 0;

  private constructor(options: SessionStoreOptions) {
    this.path = join(options.stateDir, STATE_FILE_NAME);
    this.logger = options.logger;
    this.saveDelayMs = options.saveDelayMs ?? 250;
    this.now = options.now ?? Date.now;
  }

  /**
   * Loads the state file and reconciles it with the kernel's live grants. A corrupt file
   * is reported and renamed aside; an unreadable one is reported; neither is fatal.
   */
  static async open(options: SessionStoreOptions, kernelGrants: readonly Grant[]): Promise<SessionStore> {
    const store = new SessionStore(options);
    const saved = await store.loadSaved();
    const { records, dropped, unattributed } = reconcile(saved, kernelGrants, store.now());
    for (const record of records) store.put(record);
    store.logger.info({ restored: records.length - unattributed, dropped, unattributed, file: store.path }, 'sessions restored');
    if (records.length > 0 || saved.length > 0) store.changed(); // write back the reconciled view
    return store;
  }

  /** Records a grant, or extends the same (ip, app, user, step) to `ttlSeconds` from now. */
  record(ip: string, app: string, user: string, step: GrantKind, ttlSeconds: number, gateway?: string): SessionRecord {
    return this.recordUntil(ip, app, user, step, this.now() + ttlSeconds * 1000, gateway);
  }

  /** Records a grant until `expiresAt` (ms since the epoch), made by `gateway` when clustered. */
  recordUntil(ip: string, app: string, user: string, step: GrantKind, expiresAt: number, gateway?: string): SessionRecord {
    const record: SessionRecord = { ip, app, user, step, expiresAt, ...(gateway !== undefined ? { gateway } : {}) };
    this.put(record);
    this.changed();
    return record;
  }

  private put(record: SessionRecord): void {
    let records = this.byIp.get(record.ip);
    if (records === undefined) {
      records = new Map();
      this.byIp.set(record.ip, records);
    }
    // A grant with its user supersedes the unattributed record that a start read from the kernel
    // for the same set element (a restart without its state file, then a cluster snapshot).
    if (record.user !== null) {
      records.delete(recordKey({ ...record, user: null }));
      if (record.step === 'step2') records.delete(recordKey({ ...record, app: null, user: null }));
    }
    records.set(recordKey(record), record);
  }

  /** Live step-2 windows of `ip` (attributed ones only: an unknown user opens nothing). */
  step2Windows(ip: string): Step2Window[] {
    const windows: Step2Window[] = [];
    for (const record of this.liveOf(ip)) {
      if (record.step === 'step2' && record.app !== null && record.user !== null) {
        windows.push({ app: record.app, user: record.user, expiresAt: record.expiresAt });
      }
    }
    return windows;
  }

  /**
   * The latest live expiry (ms since the epoch) the kernel holds for this grant: a step-2 window
   * is one set element per IP (any app), a service grant one per (IP, app).
   */
  kernelExpiry(ip: string, step: GrantKind, app: string): number | undefined {
    let latest: number | undefined;
    for (const record of this.liveOf(ip)) {
      if (record.step !== step || (step === 'service' && record.app !== app)) continue;
      if (latest === undefined || record.expiresAt > latest) latest = record.expiresAt;
    }
    return latest;
  }

  /** The live record of (ip, app, user, step), if any. */
  find(ip: string, app: string, user: string, step: GrantKind): SessionRecord | undefined {
    const record = this.byIp.get(ip)?.get(recordKey({ ip, app, user, step }));
    return record !== undefined && record.expiresAt > this.now() ? record : undefined;
  }

  /** The IP's live records (any order): a revoke looks at one address, not every grant. */
  listOf(ip: string): SessionRecord[] {
    return this.liveOf(ip);
  }

  /** Live records, soonest expiry first. */
  list(): SessionRecord[] {
    return this.live().sort((a, b) => a.expiresAt - b.expiresAt);
  }

  /** Forgets the IP's records: all of them, or those of one app. Returns what was removed. */
  revoke(ip: string, app?: string): SessionRecord[] {
    const removed: SessionRecord[] = [];
    const records = this.byIp.get(ip);
    for (const [key, record] of records ?? []) {
      if (app === undefined || record.app === app) {
        records!.delete(key);
        removed.push(record);
      }
    }
    if (records?.size === 0) this.byIp.delete(ip);
    if (removed.length > 0) this.changed();
    return removed;
  }

  get size(): number {
    return this.live().length;
  }

  /** Writes pending changes now; throws SessionStateError if the file cannot be written. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.save();
    if (!this.dirty) return;
    if (this.lastWriteError instanceof SessionStateError) throw this.lastWriteError;
    throw new SessionStateError(`session state not saved: ${String(this.lastWriteError)}`, { cause: this.lastWriteError });
  }

  /** Final flush on a clean stop; no background writes afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private live(): SessionRecord[] {
    const live: SessionRecord[] = [];
    for (const ip of [...this.byIp.keys()]) live.push(...this.liveOf(ip));
    return live;
  }

  /** The IP's live records; expired ones are forgotten (the kernel has dropped them too). */
  private liveOf(ip: string): SessionRecord[] {
    const records = this.byIp.get(ip);
    if (records === undefined) return [];
    const now = this.now();
    const live: SessionRecord[] = [];
    for (const [key, record] of records) {
      if (record.expiresAt > now) live.push(record);
      else records.delete(key);
    }
    if (records.size === 0) this.byIp.delete(ip);
    return live;
  }

  private changed(): void {
    this.dirty = true;
    if (this.timer !== undefined || this.closed) return;
    // Writes take at most a fifth of the time: 100,000 grants from a cluster snapshot are
    // serialized a few times, not every 250 ms while they arrive.
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.save();
      },
      Math.max(this.saveDelayMs, 4 * this.lastWriteMs),
    );
  }

  /** One write at a time; a change during a write is picked up by the next one. */
  private async save(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    const started = performance.now();
    this.writing = writeStateFile(this.path, this.live())
      .then(() => {
        this.lastWriteError = undefined;
        this.lastWriteMs = performance.now() - started;
      })
      .catch((err: unknown) => {
        this.dirty = true;
        this.lastWriteError = err;
        this.logger.error(errorFields(err), 'session state not saved; will retry on the next change');
      })
      .finally(() => {
        this.writing = undefined;
      });
    await this.writing;
  }

  private async loadSaved(): Promise<SessionRecord[]> {
    try {
      const content = await readStateFile(this.path);
      if (content.kind === 'ok') return content.records;
      if (content.kind === 'corrupt') {
        const aside = await setAside(this.path, new Date(this.now()));
        this.logger.warn(
          { file: this.path, setAside: aside, reason: content.reason },
          'session state file is corrupt; set aside, starting from the kernel grants only',
        );
      }
    } catch (err) {
      this.logger.error({ file: this.path, ...errorFields(err) }, 'session state file unusable; starting from the kernel grants only');
    }
    return [];
  }
}
