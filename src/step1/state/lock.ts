/**
 * A spin lock in shared memory (one Int32 word), for the step-1 tables every worker thread
 * updates. Critical sections are a few dozen plain reads and writes, so spinning beats
 * sleeping; Atomics on the lock word order the plain accesses made while holding it.
 *
 * A worker thread stopped in the middle of a critical section (terminated, crashed) would leave
 * its lock held forever and wedge every other worker: a lock held far longer than any critical
 * section can take is taken over. The cost of that rare case is at most one torn table entry.
 */
import { performance } from 'node:perf_hooks';

const UNLOCKED = 0;
const LOCKED = 1;
/** Spins between clock reads while waiting. */
const SPINS_PER_CHECK = 4096;
/** Far beyond any critical section, even with the holder preempted for a few time slices. */
const STALE_LOCK_MS = 500;

export function lock(words: Int32Array, index: number): void {
  if (Atomics.compareExchange(words, index, UNLOCKED, LOCKED) === UNLOCKED) return;
  const since = performance.now();
  for (let spins = 1; ; spins++) {
    if (Atomics.load(words, index) === UNLOCKED && Atomics.compareExchange(words, index, UNLOCKED, LOCKED) === UNLOCKED) return;
    if (spins % SPINS_PER_CHECK === 0 && performance.now() - since > STALE_LOCK_MS) {
      Atomics.store(words, index, LOCKED);
      return;
    }
  }
}

export function unlock(words: Int32Array, index: number): void {
  Atomics.store(words, index, UNLOCKED);
}
