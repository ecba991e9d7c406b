/**
 * The step-1 state the worker threads share (src/step1/shared-state.ts): first each table on
 * its own, against the in-memory implementation it stands in for; then two real worker threads
 * hammering one table at the same moment. Budgets are exact (tolerance 0: every update of an
 * entry is made under its lock), no one-time code is claimed twice, no segment judged twice.
 * The worker threads run the built code (dist/), as the daemon's do: `npm run build:ts` first.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { MemoryLockoutStates, SecretLockout, type LockEvent, type LockFactor } from '../../../src/auth/lockout.js';
import { MemoryUsedCodeStore, UsedCodes, type UsedCode } from '../../../src/auth/used-codes.js';
import type { TcpSegmentView } from '../../../src/packet/decode.js';
import {
  createSharedState,
  SharedDecidedSegments,
  SharedLockoutStates,
  SharedSourceBudget,
  SharedUsedCodeStore,
  type SharedStateBuffers,
} from '../../../src/step1/shared-state.js';
import { seededRandom } from './seeded-random.js';

const NOW_S = 1_760_000_000;
const SMALL = { budgetSets: 64, segmentSets: 32, lockoutSlots: 64, usedCodeSlots: 256 };

function segment(src: number[], sport: number, seq: number): TcpSegmentView {
  return { packet: Buffer.from(src), srcOffset: 0, family: src.length === 4 ? 4 : 6, sport, seq } as unknown as TcpSegmentView;
}

describe('SharedSourceBudget', () => {
  it('counts a whole prefix, refuses the limit + 1st knock in a minute, and forgets after a minute', () => {
    let now = NOW_S * 1000;
    const buffers = createSharedState(3, SMALL);
    const budget = new SharedSourceBudget(buffers, 24, 64, () => now);
    const a = Buffer.from([198, 51, 100, 1]);
    const b = Buffer.from([198, 51, 100, 200]);
    const other = Buffer.from([203, 0, 113, 5]);
    expect([budget.allow(a, 0, 4), budget.allow(b, 0, 4), budget.allow(a, 0, 4), budget.allow(b, 0, 4)]).toEqual([true, true, true, false]);
    expect(budget.allow(other, 0, 4)).toBe(true);
    now += 66_000;
    expect(budget.allow(a, 0, 4)).toBe(true);
  });

  it('takes a new limit from the main thread, keeping what was counted', () => {
    const buffers = createSharedState(2, SMALL);
    const budget = new SharedSourceBudget(buffers, 32, 64, () => NOW_S * 1000);
    const a = Buffer.from([192, 0, 2, 1]);
    expect([budget.allow(a, 0, 4), budget.allow(a, 0, 4), budget.allow(a, 0, 4)]).toEqual([true, true, false]);
    SharedSourceBudget.setLimit(buffers, 3);
    expect([budget.allow(a, 0, 4), budget.allow(a, 0, 4)]).toEqual([true, false]);
  });
});

describe('SharedDecidedSegments', () => {
  it('claims a first copy, reports the first outcome for later copies (pending while undecided)', () => {
    const decided = new SharedDecidedSegments(createSharedState(1, SMALL));
    const s = segment([192, 0, 2, 1], 40000, 7001);
    expect(decided.claim(s)).toBeUndefined();
    expect(decided.claim(s)).toBe('pending');
    decided.record(s, 'bad-key');
    expect(decided.claim(s)).toBe('bad-key');
    const v6 = segment([0x20, 1, 0xd, 0xb8, ...Array<number>(11).fill(0), 1], 40000, 7001);
    expect(decided.claim(v6)).toBeUndefined();
    decided.record(v6, 'granted');
    expect(decided.claim(v6)).toBe('granted');
    expect(decided.claim(s)).toBe('bad-key');
  });
});

describe('SharedLockoutStates', () => {
  it('locks like the in-memory states for a burst, refuses while locked, and unlocks on time', () => {
    let now = NOW_S * 1000;
    const events: LockEvent[][] = [[], []];
    const policy = { userFailures: 3, appFailures: 5, windowSeconds: 600, lockSeconds: 900 };
    const both = [new SharedLockoutStates(createSharedState(1, SMALL)), new MemoryLockoutStates()].map(
      (states, i) => new SecretLockout(policy, { states, now: () => now, onLock: (e) => events[i]!.push(e) }),
    );
    for (const lockout of both) {
      for (let i = 0; i < 3; i++) lockout.fail('step1-otp', 'svc', 'alice');
      expect(lockout.isLocked('step1-otp', 'svc', 'alice')).toBe(true);
      expect(lockout.isLocked('step1-otp', 'svc', 'bob')).toBe(false);
      for (let i = 0; i < 4; i++) lockout.fail('step1-key', 'svc');
      expect(lockout.isLocked('step1-key', 'svc')).toBe(false);
    }
    now += 900_001;
    for (const lockout of both) expect(lockout.isLocked('step1-otp', 'svc', 'alice')).toBe(false);
    expect(events[0]).toEqual(events[1]);
    expect(events[0]).toHaveLength(1);
  });

  it('keeps every factor, app and user apart, names in any script alike', () => {
    const policy = { userFailures: 2, appFailures: 2, windowSeconds: 600, lockSeconds: 900 };
    const lockout = new SecretLockout(policy, { states: new SharedLockoutStates(createSharedState(1, SMALL)), now: () => NOW_S * 1000 });
    for (let i = 0; i < 2; i++) lockout.fail('step1-otp', 'café', 'zoë');
    for (let i = 0; i < 2; i++) lockout.fail('step2-key', 'ab');
    for (let i = 0; i < 2; i++) lockout.fail('step1-key', 'x'.repeat(300));
    expect(lockout.isLocked('step1-otp', 'café', 'zoë')).toBe(true);
    expect(lockout.isLocked('step2-key', 'ab')).toBe(true);
    expect(lockout.isLocked('step1-key', 'x'.repeat(300))).toBe(true);
    const others: Array<[LockFactor, string, string?]> = [
      ['step1-otp', 'café', 'zoe'],
      ['step1-otp', 'cafe', 'zoë'],
      ['step2-token', 'café', 'zoë'],
      ['step1-key', 'café'],
      ['step2-key', 'a', 'b'],
      ['step1-key', 'ab'],
      ['step1-key', `${'x'.repeat(299)}y`],
    ];
    for (const [factor, app, user] of others) expect(lockout.isLocked(factor, app, user), `${factor} ${app} ${user ?? ''}`).toBe(false);
  });
});

describe('SharedUsedCodeStore', () => {
  it('keeps exactly what the in-memory store keeps through random claims, expiries and restores', () => {
    const random = seededRandom(7);
    const shared = new UsedCodes({ store: new SharedUsedCodeStore(createSharedState(1, SMALL)), maxEntries: 100 });
    const memory = new UsedCodes({ store: new MemoryUsedCodeStore(), maxEntries: 100 });
    let now = NOW_S;
    for (let i = 0; i < 20_000; i++) {
      now += random() < 0.05 ? 1 : 0;
      const code: UsedCode = {
        scope: Math.floor(random() * 12)
          .toString(16)
          .padStart(32, '0'),
        counter: Math.floor(random() * 40),
        expiresAt: now + 1 + Math.floor(random() * 5),
      };
      expect(shared.isUsed(code.scope, code.counter, now)).toBe(memory.isUsed(code.scope, code.counter, now));
      expect(shared.add(code, now)).toBe(memory.add(code, now));
    }
    const sort = (codes: UsedCode[]) => codes.map((c) => `${c.scope}:${c.counter}:${c.expiresAt}`).sort();
    expect(sort(shared.list(now))).toEqual(sort(memory.list(now)));
    const restored = new UsedCodes({ store: new SharedUsedCodeStore(createSharedState(1, SMALL)) });
    expect(restored.restore(shared.list(now), now)).toBe(shared.size);
    expect(sort(restored.list(now))).toEqual(sort(shared.list(now)));
  });

  it('refuses every code up to a time step when told to (unreadable file)', () => {
    const used = new UsedCodes({ store: new SharedUsedCodeStore(createSharedState(1, SMALL)) });
    used.refuseThrough(50);
    expect(used.add({ scope: 'a'.repeat(32), counter: 50, expiresAt: NOW_S + 90 }, NOW_S)).toBe(false);
    expect(used.add({ scope: 'a'.repeat(32), counter: 51, expiresAt: NOW_S + 90 }, NOW_S)).toBe(true);
  });
});

type Results = [number[], number[]];

/** What one worker posts: its results, and how many operations it made while the other was midway. */
interface WorkerReport {
  result: number[];
  whileOtherMidway: number;
}

/** Runs `op` on two worker threads at once over the same buffers; what each reported. */
async function raceOnce(op: string, buffers: SharedStateBuffers, count: number): Promise<[WorkerReport, WorkerReport]> {
  const script = new URL('./shared-state-worker.mjs', import.meta.url);
  if (!existsSync(new URL('../../../dist/step1/shared-state.js', import.meta.url))) throw new Error('dist/ is missing: run `npm run build:ts` first');
  const go = new SharedArrayBuffer(4);
  const progress = new SharedArrayBuffer(12);
  const workers = [0, 1].map((me) => new Worker(script, { workerData: { op, buffers, go, progress, me, count, now: NOW_S } }));
  const reports = workers.map(
    (worker) =>
      new Promise<WorkerReport>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
  );
  // Both are waiting on `go` once they are online; the start is then one store and one notify.
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('online', resolve))));
  await new Promise((resolve) => setTimeout(resolve, 50));
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const [a, b] = await Promise.all(reports);
  await Promise.all(workers.map((worker) => worker.terminate()));
  return [a!, b!];
}

/** At most this many races per test: each is checked, and one must have really interleaved. */
const RACE_ATTEMPTS = 5;

/**
 * Races `op` until the two workers interleaved (each made operations while the other was
 * midway through its own): on a busy machine one thread can run its whole share while the other
 * waits for a CPU, which would prove nothing. `check` judges every race's results; the answer is
 * how many operations each worker made while the other was midway, in the last race.
 */
async function race(op: string, newBuffers: () => SharedStateBuffers, count: number, check: (...results: Results) => void): Promise<[number, number]> {
  let overlap: [number, number] = [0, 0];
  for (let attempt = 0; attempt < RACE_ATTEMPTS && !interleaved(overlap); attempt++) {
    const [a, b] = await raceOnce(op, newBuffers(), count);
    check(a.result, b.result);
    overlap = [a.whileOtherMidway, b.whileOtherMidway];
  }
  return overlap;
}

const interleaved = (overlap: [number, number]): boolean => overlap[0] > 0 && overlap[1] > 0;

function expectInterleaved(overlap: [number, number]): void {
  expect(interleaved(overlap), `operations each worker made while the other was midway, in ${RACE_ATTEMPTS} races: ${overlap.join(', ')}`).toBe(true);
}

describe('two worker threads on one table at once (each working while the other is midway)', () => {
  it('never claim one one-time code twice, and lose none', async () => {
    const overlap = await race(
      'codes',
      () => createSharedState(1),
      5_000,
      (a, b) => {
        const both = new Set(a);
        expect(b.filter((i) => both.has(i))).toEqual([]);
        expect(a.length + b.length).toBe(5_000);
      },
    );
    expectInterleaved(overlap);
  });

  it('keep one prefix within its budget exactly', async () => {
    const overlap = await race(
      'budget',
      () => createSharedState(1_000),
      20_000,
      (a, b) => {
        expect(a.length + b.length).toBe(1_000);
      },
    );
    expectInterleaved(overlap);
  });

  it('judge each segment once', async () => {
    const overlap = await race(
      'segments',
      () => createSharedState(1),
      20_000,
      (a, b) => {
        const both = new Set(a);
        expect(b.filter((i) => both.has(i))).toEqual([]);
        expect(a.length + b.length).toBe(20_000);
      },
    );
    expectInterleaved(overlap);
  });

  it('lock a secret once for a burst counted on both', async () => {
    const overlap = await race(
      'lockout',
      () => createSharedState(1),
      20_000,
      (a, b) => {
        expect(a[0]! + b[0]!).toBe(1);
      },
    );
    expectInterleaved(overlap);
  });

  it('give each of many secrets one slot in a small table, so each locks once', async () => {
    const overlap = await race(
      'lockout-keys',
      () => createSharedState(1, { ...SMALL, lockoutSlots: 4096 }),
      2048 * 4,
      (a, b) => {
        expect(a[0]! + b[0]!).toBe(2048);
      },
    );
    expectInterleaved(overlap);
  });
});
