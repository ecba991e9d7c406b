/**
 * Apps with `end_flows_on_expiry`: when an address's service grant for the app expires in the
 * kernel, its flows to the app's port end the way a revoke ends them. Without this a flow opened
 * while granted outlives the grant (a kept-alive VPN tunnel: for good). The kernel removes the
 * set element by itself and says nothing, so the daemon keeps each grant's deadline and one timer
 * for the soonest; a grant renewed before its deadline moves the deadline, and the live grant's
 * expiry is checked again before anything ends.
 */
import { revokedFlowTargets, type FlowCloser, type FlowScope } from '../firewall/conntrack.js';
import { errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { SessionStore } from './store.js';

/** The health problem while flows of an expired grant could not be ended. */
export const FLOWS_NOT_ENDED_AT_EXPIRY = 'flows of an expired grant could not be ended: its clients may still be connected (see the error log)';

/**
 * Added to a deadline known in whole seconds only (a grant from another gateway or put back by
 * the self-heal is given to the kernel rounded up; a restored one is read from it in seconds):
 * a flow ended while the kernel still held the grant would come straight back.
 */
export const WHOLE_SECOND_GRACE_MS = 1000;

/** Longest wait one timer can arm (setTimeout's limit); a later deadline re-arms then. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Expired grants whose flows are ended at once (each runs `conntrack`, and `ss` for local TCP). */
const ENDING_PARALLEL = 4;

export interface FlowExpiryOptions {
  /** The live grants: a renewed one is not ended. */
  sessions: Pick<SessionStore, 'kernelExpiry'>;
  closer: FlowCloser;
  /** The running config's apps (whose setting applies when the grant expires). */
  scope: () => FlowScope;
  logger: Logger;
  onProblem?: (problem: string) => void;
  now?: () => number;
}

interface Deadline {
  at: number;
  ip: string;
  app: string;
}

/** A binary min-heap of deadlines; entries a later deadline replaced are skipped when they come up. */
class DeadlineHeap {
  private items: Deadline[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Deadline | undefined {
    return this.items[0];
  }

  push(item: Deadline): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.at <= item.at) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = item;
  }

  pop(): Deadline | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && items[right]!.at < items[left]!.at ? right : left;
      if (items[child]!.at >= last.at) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }

  replaceAll(items: Deadline[]): void {
    this.items = [];
    for (const item of items) this.push(item);
  }
}

/** Watches service grants' deadlines; ends the flows of those that expired for apps that ask for it. */
export class FlowExpiry {
  /** The kernel's latest deadline per address, then per app. */
  private readonly deadlines = new Map<string, Map<string, number>>();
  private readonly heap = new DeadlineHeap();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly due: Deadline[] = [];
  private ending = 0;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: FlowExpiryOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The kernel holds the address's service grant for `app` until `until` (ms since the epoch) at most. */
  watch(ip: string, app: string, until: number): void {
    if (this.closed) return;
    const apps = this.deadlines.get(ip) ?? new Map<string, number>();
    this.deadlines.set(ip, apps);
    if ((apps.get(app) ?? -Infinity) >= until) return;
    apps.set(app, until);
    this.heap.push({ at: until, ip, app });
    // Renewals leave replaced entries behind: rebuild before they outnumber the live ones.
    if (this.heap.size > 2 * this.count() + 1024) this.compact();
    this.arm();
  }

  /** A revoke: the address's grants (all, or one app's) are gone, their flows ended by it. */
  forget(ip: string, app?: string): void {
    const apps = this.deadlines.get(ip);
    if (app === undefined) this.deadlines.delete(ip);
    else apps?.delete(app);
    if (apps?.size === 0) this.deadlines.delete(ip);
  }

  /** Grants watched (tests, and the heap's compaction). */
  count(): number {
    let count = 0;
    for (const apps of this.deadlines.values()) count += apps.size;
    return count;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private compact(): void {
    const live: Deadline[] = [];
    for (const [ip, apps] of this.deadlines) for (const [app, at] of apps) live.push({ at, ip, app });
    this.heap.replaceAll(live);
  }

  private arm(): void {
    const next = this.heap.peek();
    if (this.closed || next === undefined || next.at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = next.at;
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_TIMER_MS, Math.max(0, next.at - this.now())));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    for (let next = this.heap.peek(); next !== undefined && next.at <= now; next = this.heap.peek()) {
      this.heap.pop();
      const apps = this.deadlines.get(next.ip);
      if (apps?.get(next.app) !== next.at) continue; // renewed since, or revoked
      apps.delete(next.app);
      if (apps.size === 0) this.deadlines.delete(next.ip);
      this.due.push(next);
    }
    this.startEnding();
    this.arm();
  }

  private startEnding(): void {
    while (this.ending < ENDING_PARALLEL && this.due.length > 0) {
      const next = this.due.shift()!;
      this.ending++;
      void this.endIfExpired(next).finally(() => {
        this.ending--;
        this.startEnding();
      });
    }
  }

  /** Ends the flows unless the app no longer asks for it or the grant was renewed after all. */
  private async endIfExpired({ ip, app: name }: Deadline): Promise<void> {
    const { sessions, closer, scope, logger, onProblem } = this.options;
    const running = scope();
    const app = running.apps.find((a) => a.name === name);
    if (!app?.endFlowsOnExpiry) return;
    const live = sessions.kernelExpiry(ip, 'service', name);
    if (live !== undefined) {
      // A renewal this watch did not see: its kernel deadline is known in whole seconds at best.
      this.watch(ip, name, live + WHOLE_SECOND_GRACE_MS);
      return;
    }
    try {
      const flowsClosed = await closer.close(ip, revokedFlowTargets(running, app));
      logger.info({ ip, app: name, flowsClosed }, 'service grant expired: its flows ended');
    } catch (err) {
      logger.error({ ip, app: name, ...errorFields(err) }, 'service grant expired, but its flows could not be ended');
      onProblem?.(FLOWS_NOT_ENDED_AT_EXPIRY);
    }
  }
}
