// A worker thread for shared-state.test.ts: attaches to the shared tables the test made, waits
// for the start signal (so the two workers really run at the same time), hammers one table and
// posts what it got, and how many of its operations it made while the other worker was midway
// through its own (the proof they overlapped). It runs the built code (dist/), as the daemon's
// worker threads do.
import { parentPort, workerData } from 'node:worker_threads';
import { SecretLockout } from '../../../dist/auth/lockout.js';
import { UsedCodes } from '../../../dist/auth/used-codes.js';
import { SharedDecidedSegments, SharedLockoutStates, SharedSourceBudget, SharedUsedCodeStore } from '../../../dist/step1/shared-state.js';

const { op, buffers, go, progress, me, count, now } = workerData;
Atomics.wait(new Int32Array(go), 0, 0);

// Each worker publishes how many operations it has done (slots 0 and 1); the other reads it after
// each of its own. Slot 2 is a spinning barrier, so neither starts until both are running: a woken
// thread takes a while to get a CPU, long enough for the other to finish a short burst alone.
const done = new Int32Array(progress);
Atomics.add(done, 2, 1);
const deadline = Date.now() + 5_000;
while (Atomics.load(done, 2) < 2 && Date.now() < deadline);
let whileOtherMidway = 0;
function step(i) {
  Atomics.store(done, me, i + 1);
  const other = Atomics.load(done, 1 - me);
  if (other > 0 && other < count) whileOtherMidway++;
}

/** For 'lockout-keys': secrets, and failures of each per worker (count = LOCKOUT_KEYS × LOCKOUT_ROUNDS). */
const LOCKOUT_KEYS = 2048;
const LOCKOUT_ROUNDS = count / LOCKOUT_KEYS;

const result = [];
if (op === 'codes') {
  const used = new UsedCodes({ store: new SharedUsedCodeStore(buffers), maxEntries: 16_384 });
  for (let i = 0; i < count; i++) {
    const code = { scope: (i % 7).toString(16).padStart(32, 'a'), counter: 1000 + i, expiresAt: now + 90 };
    if (!used.isUsed(code.scope, code.counter, now) && used.add(code, now)) result.push(i);
    step(i);
  }
} else if (op === 'budget') {
  const budget = new SharedSourceBudget(buffers, 24, 64, () => now * 1000);
  const packet = Buffer.from([198, 51, 100, 0]);
  for (let i = 0; i < count; i++) {
    packet[3] = i & 0xff; // every address of one /24: one budget
    if (budget.allow(packet, 0, 4)) result.push(i);
    step(i);
  }
} else if (op === 'segments') {
  const decided = new SharedDecidedSegments(buffers);
  const packet = Buffer.from([192, 0, 2, 7]);
  for (let i = 0; i < count; i++) {
    const segment = { packet, srcOffset: 0, family: 4, sport: 40_000 + (i % 1000), seq: i };
    if (decided.claim(segment) === undefined) {
      decided.record(segment, 'granted');
      result.push(i);
    }
    step(i);
  }
} else if (op === 'lockout') {
  let locks = 0;
  // The limit is half of the burst the two make together, so it is crossed while both are at work.
  const lockout = new SecretLockout(
    { userFailures: count / 2, appFailures: count / 2, windowSeconds: 600, lockSeconds: 900 },
    {
      states: new SharedLockoutStates(buffers),
      now: () => now * 1000,
      onLock: () => locks++,
    },
  );
  for (let i = 0; i < count; i++) {
    lockout.fail('step1-otp', 'svc', 'alice');
    step(i);
  }
  result.push(locks);
} else if (op === 'lockout-keys') {
  // Many secrets, both workers taking their slots in the same order at once, then failing each: the two must find (or
  // take) one slot per secret, or a secret's failures split over two slots and it never locks.
  let locks = 0;
  const lockout = new SecretLockout(
    { userFailures: 2 * LOCKOUT_ROUNDS, appFailures: 2 * LOCKOUT_ROUNDS, windowSeconds: 600, lockSeconds: 900 },
    { states: new SharedLockoutStates(buffers), now: () => now * 1000, onLock: () => locks++ },
  );
  for (let i = 0; i < count; i++) {
    lockout.fail('step1-key', `app-${i % LOCKOUT_KEYS}`);
    step(i);
  }
  result.push(locks);
}
parentPort.postMessage({ result, whileOtherMidway });
