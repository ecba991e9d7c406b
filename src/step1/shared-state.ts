/**
 * The step-1 state, one implementation for every user: the per-source-prefix rate budget, the
 * retransmission table, the per-secret lockout counts and the used one-time codes, each a table
 * of Int32 words in a SharedArrayBuffer (state/, one module per table, with its named layout).
 * The daemon's main thread creates the buffers once and hands the same ones to every worker (and
 * to each worker restarted, and through reloads), so N workers count one budget, and a replayed
 * `otp` knock is accepted once even when its copies reach two workers at the same moment.
 * `replay` and `watch` run the same tables on buffers of their own (`singleThreadState`), so they
 * decide as the daemon does.
 *
 * Fixed-size tables, no strings and no allocation per packet. Each table guards its entries with
 * spin locks (state/lock.ts). Where an entry is found by hash, the hash is keyed SipHash with a
 * key shared through the buffers: a client picks its address bits, port and sequence number, and
 * must not be able to aim its entries at someone else's.
 */
import { randomBytes } from 'node:crypto';
import type { GlobalConfig } from '../config/types.js';
import { SharedDecidedSegments, decidedSegmentsBytes } from './state/decided-segments.js';
import type { SharedStateBuffers } from './state/layout.js';
import { SharedLockoutStates, lockoutTableBytes } from './state/lockout-table.js';
import { SharedSourceBudget, sourceBudgetBytes } from './state/source-budget.js';
import { SharedUsedCodeStore, usedCodeTableBytes } from './state/used-code-table.js';

export type { SharedStateBuffers } from './state/layout.js';
export type { FirstOutcome } from './state/decided-segments.js';
export { SharedDecidedSegments, SharedLockoutStates, SharedSourceBudget, SharedUsedCodeStore };

export interface SharedStateSizes {
  /** Sets of 4 prefixes in the rate budget (a power of two). */
  budgetSets: number;
  /** Sets of 8 segments in the retransmission table (a power of two). */
  segmentSets: number;
  /** Slots of the lockout table (a power of two). */
  lockoutSlots: number;
  /** Slots of the used-code table (a power of two, at least twice the codes it may hold). */
  usedCodeSlots: number;
}

export const DEFAULT_SHARED_SIZES: SharedStateSizes = { budgetSets: 16_384, segmentSets: 16_384, lockoutSlots: 8_192, usedCodeSlots: 32_768 };

/** Allocates fresh shared state (main thread, once per daemon). */
export function createSharedState(limitPerMinute: number, sizes: SharedStateSizes = DEFAULT_SHARED_SIZES): SharedStateBuffers {
  const hashKey = new SharedArrayBuffer(16);
  new Uint8Array(hashKey).set(randomBytes(16));
  const buffers = {
    hashKey,
    budget: new SharedArrayBuffer(sourceBudgetBytes(sizes.budgetSets)),
    segments: new SharedArrayBuffer(decidedSegmentsBytes(sizes.segmentSets)),
    lockout: new SharedArrayBuffer(lockoutTableBytes(sizes.lockoutSlots)),
    usedCodes: new SharedArrayBuffer(usedCodeTableBytes(sizes.usedCodeSlots)),
  };
  SharedSourceBudget.setLimit(buffers, limitPerMinute);
  return buffers;
}

/** The four tables attached to one set of buffers. */
export interface Step1Tables {
  budget: SharedSourceBudget;
  decided: SharedDecidedSegments;
  lockout: SharedLockoutStates;
  usedCodes: SharedUsedCodeStore;
}

/**
 * The daemon's tables, at the daemon's sizes, on buffers no other thread sees: for `replay`,
 * `watch` and tests, on their own clock (`now`, ms since the epoch).
 */
export function singleThreadState(global: Pick<GlobalConfig, 'rateLimitPerMinute' | 'sourcePrefixV4' | 'sourcePrefixV6'>, now: () => number): Step1Tables {
  const buffers = createSharedState(global.rateLimitPerMinute);
  return {
    budget: new SharedSourceBudget(buffers, global.sourcePrefixV4, global.sourcePrefixV6, now),
    decided: new SharedDecidedSegments(buffers),
    lockout: new SharedLockoutStates(buffers),
    usedCodes: new SharedUsedCodeStore(buffers),
  };
}
