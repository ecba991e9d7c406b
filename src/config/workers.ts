/** How many step-1 worker threads run: `step1_workers` resolved against this machine. */
import { availableParallelism } from 'node:os';
import { MAX_STEP1_WORKERS } from './schema.js';

/** A number is taken as is; `auto` is one worker per core, capped at MAX_STEP1_WORKERS. */
export function resolveStep1Workers(value: number | 'auto', cores = availableParallelism()): number {
  if (value !== 'auto') return value;
  return Math.max(1, Math.min(MAX_STEP1_WORKERS, cores));
}

/**
 * The queues and log groups the step-1 workers use, for `check` and the start log:
 * `4 step-1 workers: NFQUEUE 7-10, or NFLOG groups 5-8`.
 */
export function describeStep1Queues(plan: { step1Workers: number; queueNum: number; nflogGroup: number }): string {
  const range = (first: number) => (plan.step1Workers > 1 ? `${first}-${first + plan.step1Workers - 1}` : `${first}`);
  const workers = plan.step1Workers === 1 ? '1 step-1 worker' : `${plan.step1Workers} step-1 workers`;
  return `${workers}: NFQUEUE ${range(plan.queueNum)}, or NFLOG group${plan.step1Workers > 1 ? 's' : ''} ${range(plan.nflogGroup)}`;
}
