/**
 * The grant sets, shared by every backend: add (with a timeout; refreshes a live element),
 * delete and list, per kind (step-2, service) and family. Changes go through one serial,
 * batching queue: every change asked for in the same event-loop turn goes to the kernel in
 * one transaction (one nft script, one batch of lines to the ipset session), so a burst of
 * knocks costs one kernel round trip instead of one per grant, and nothing waits on a child
 * process synchronously. Each caller's promise gets its own change's outcome: a batch that
 * fails as a whole is retried change by change, so one bad element fails only its caller.
 *
 * A backend supplies a GrantSetDriver (nft text through libnftables or `nft`; the ipset
 * session): how a batch is written, and how a set is read back.
 */
import type { IpFamily, Protocol } from '../config/types.js';
import { KnockPortError } from '../shared/errors.js';
import type { GrantKind } from '../shared/kinds.js';

/** A set element: the address, plus protocol and port for service grants. */
export interface GrantKey {
  address: string;
  protocol?: Protocol;
  port?: number;
}

/** An element as read back from the kernel. */
export interface GrantEntry extends GrantKey {
  expiresInSeconds: number;
}

export type GrantChange =
  { op: 'add'; kind: GrantKind; family: IpFamily; key: GrantKey; ttlSeconds: number } | { op: 'delete'; kind: GrantKind; family: IpFamily; key: GrantKey };

/** How one backend writes and reads its grant sets. */
export interface GrantSetDriver {
  /**
   * Applies `changes` in order, in as few kernel transactions as it can. Resolves with one
   * outcome per change (undefined: done); rejects when the batch failed as a whole, when
   * which changes took effect is unknown (the queue then retries them one by one).
   */
  apply(changes: readonly GrantChange[]): Promise<Array<Error | undefined>>;
  /** The live elements of one set, read from the kernel. */
  list(kind: GrantKind, family: IpFamily): Promise<GrantEntry[]>;
  /** Releases what the driver holds (the ipset session). */
  close?(): void;
}

export class GrantSetError extends KnockPortError {
  /**
   * True when the same failure would hit each change alone (the tool cannot even start): the
   * queue then fails the whole batch at once instead of retrying change by change.
   */
  readonly sameForEach: boolean;

  constructor(message: string, options: { sameForEach?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.sameForEach = options.sameForEach ?? false;
  }
}

/** Kernel timeouts are whole seconds, at least one. */
export function ttlOf(ttlSeconds: number): number {
  return Math.max(1, Math.round(ttlSeconds));
}

interface Pending<T> {
  run: 'change' | 'list';
  change?: GrantChange;
  list?: { kind: GrantKind; family: IpFamily };
  resolve: (value: T) => void;
  reject: (err: Error) => void;
}

type AnyPending = Pending<void> | Pending<GrantEntry[]>;

export interface GrantSetsOptions {
  /**
   * Most changes in one transaction. A burst larger than this goes in several transactions,
   * with the event loop free between them (libnftables parses in-process, on this thread).
   */
  maxBatch?: number;
}

/** The serial, batching queue in front of a GrantSetDriver. */
export class GrantSets {
  private readonly queue: AnyPending[] = [];
  private scheduled = false;
  private busy = false;
  private closing = false;
  private readonly maxBatch: number;

  constructor(
    private readonly driver: GrantSetDriver,
    options: GrantSetsOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256);
  }

  /** Adds `key` to the set for `ttlSeconds`, or refreshes its timeout when it is live. */
  add(kind: GrantKind, family: IpFamily, key: GrantKey, ttlSeconds: number): Promise<void> {
    return this.change({ op: 'add', kind, family, key, ttlSeconds: ttlOf(ttlSeconds) });
  }

  /** Removes `key` from the set; absent is fine. */
  delete(kind: GrantKind, family: IpFamily, key: GrantKey): Promise<void> {
    return this.change({ op: 'delete', kind, family, key });
  }

  /** The set's live elements, read after every change asked for before this call. */
  list(kind: GrantKind, family: IpFamily): Promise<GrantEntry[]> {
    return new Promise<GrantEntry[]>((resolve, reject) => this.enqueue({ run: 'list', list: { kind, family }, resolve, reject }));
  }

  /** Changes not yet confirmed by the kernel (for tests and health). */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Releases the driver (the ipset session) once every change asked for so far has reached
   * the kernel: a backend replaced by a reload still completes the grants it accepted.
   */
  close(): void {
    this.closing = true;
    if (!this.busy && !this.scheduled && this.queue.length === 0) this.driver.close?.();
  }

  private change(change: GrantChange): Promise<void> {
    return new Promise<void>((resolve, reject) => this.enqueue({ run: 'change', change, resolve, reject }));
  }

  private enqueue(item: AnyPending): void {
    this.queue.push(item);
    this.schedule();
  }

  /** One flush per event-loop turn: whatever was asked for until then shares a transaction. */
  private schedule(): void {
    if (this.scheduled || this.busy) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const head = this.queue[0];
      if (!head) return;
      if (head.run === 'list') await this.runList(this.queue.shift() as Pending<GrantEntry[]>);
      else await this.runChanges(this.takeChanges());
    } finally {
      this.busy = false;
      // Whatever arrived meanwhile goes next, in a later turn (the event loop runs in between).
      if (this.queue.length > 0) this.schedule();
      else if (this.closing) this.driver.close?.();
    }
  }

  /** The leading changes of the queue, up to maxBatch (a list waits for the changes before it). */
  private takeChanges(): Array<Pending<void>> {
    const batch: Array<Pending<void>> = [];
    while (batch.length < this.maxBatch && this.queue[0]?.run === 'change') batch.push(this.queue.shift() as Pending<void>);
    return batch;
  }

  private async runList(item: Pending<GrantEntry[]>): Promise<void> {
    const { kind, family } = item.list!;
    try {
      item.resolve(await this.driver.list(kind, family));
    } catch (err) {
      item.reject(asError(err));
    }
  }

  private async runChanges(batch: Array<Pending<void>>): Promise<void> {
    let outcomes: Array<Error | undefined>;
    try {
      outcomes = await this.driver.apply(batch.map((p) => p.change!));
    } catch (err) {
      if (batch.length === 1 || (err instanceof GrantSetError && err.sameForEach)) {
        for (const item of batch) item.reject(asError(err));
        return;
      }
      // Which changes of a failed batch took effect is unknown: each is tried alone, so every
      // caller gets its own outcome (adds and deletes are idempotent, a repeat is harmless).
      for (const item of batch) await this.runChanges([item]);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome) item.reject(outcome);
      else item.resolve();
    });
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new GrantSetError(String(err));
}
