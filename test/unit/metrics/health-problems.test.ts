/** The health report's memory of degraded conditions: logged once per quiet spell, reported while recent. */
import { describe, expect, it } from 'vitest';
import { PROBLEM_MEMORY_MS, ProblemMemory } from '../../../src/metrics/health-problems.js';

function memory() {
  let now = 1_000_000;
  const warned: string[] = [];
  const problems = new ProblemMemory({ warn: (message: string) => warned.push(message) } as never, () => now);
  return { problems, warned, advance: (ms: number) => (now += ms) };
}

describe('ProblemMemory', () => {
  it('logs a condition when first seen, not again while it repeats, and again after a quiet spell', () => {
    const { problems, warned, advance } = memory();
    problems.note('raw socket buffer full');
    advance(PROBLEM_MEMORY_MS);
    problems.note('raw socket buffer full');
    expect(warned).toEqual(['raw socket buffer full']);
    advance(PROBLEM_MEMORY_MS + 1);
    problems.note('raw socket buffer full');
    expect(warned).toEqual(['raw socket buffer full', 'raw socket buffer full']);
  });

  it('reports a condition while it was seen within the memory, in the order first noted', () => {
    const { problems, advance } = memory();
    problems.note('a');
    advance(10);
    problems.note('b');
    problems.note('a');
    expect(problems.recent()).toEqual(['a', 'b']);
    advance(PROBLEM_MEMORY_MS);
    expect(problems.recent()).toEqual(['a', 'b']);
    advance(1);
    expect(problems.recent()).toEqual([]);
  });

  it('forgets a condition that is cleared', () => {
    const { problems, warned } = memory();
    problems.note('firewall self-heal failed');
    problems.clear('firewall self-heal failed');
    expect(problems.recent()).toEqual([]);
    problems.note('firewall self-heal failed');
    expect(warned).toHaveLength(2);
  });
});
