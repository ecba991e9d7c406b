/** How many step-1 worker threads run: `step1_workers` resolved against this machine. */
import { availableParallelism } from 'node:os';
import { MAX_STEP1_WORKERS } from './schema.js';

/** A number is taken as is; `auto` is one worker per core, capped at MAX_STEP1_WORKERS. */
export function resolveStep1Workers(value: number | 'auto', cores = availableParallelism()): number {
  if (value !== 'auto') return value;
  return Math.max(1, Math.min(MAX_STEP1_WORKERS, cores));
}
