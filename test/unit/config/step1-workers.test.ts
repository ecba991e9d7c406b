/** step1_workers: the queues and log groups N workers use must all be valid numbers. */
import { describe, expect, it } from 'vitest';
import { issuesOf, lineOf, load, VALID } from './helpers.js';

const withGlobal = (lines: string) => VALID.replace('global:\n', `global:\n${lines}`);

describe('step1_workers against queue_num and nflog_group', () => {
  it('accepts the last queue and group at 65535', () => {
    const config = load(withGlobal('  step1_workers: 4\n  queue_num: 65532\n  nflog_group: 65532\n'));
    expect(config.global.step1Workers).toBe(4);
  });

  it('refuses a range past 65535, naming the key, its line, the range and the highest start', () => {
    const text = withGlobal('  step1_workers: 4\n  queue_num: 65533\n');
    const issues = issuesOf(text);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'global.queue_num', line: lineOf(text, 'queue_num') });
    expect(issues[0]!.message).toBe(
      '4 step-1 workers (step1_workers) use queues 65533..65536 (global.queue_num is the first), past 65535: lower it to at most 65532 or use fewer workers',
    );
  });

  it('checks the NFLOG groups as well', () => {
    const text = withGlobal('  step1_workers: 16\n  nflog_group: 65535\n');
    const [issue, ...rest] = issuesOf(text);
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({ path: 'global.nflog_group' });
    expect(issue!.message).toContain('log groups 65535..65550');
  });

  it('one worker (the single queue of before) allows 65535', () => {
    expect(load(withGlobal('  step1_workers: 1\n  queue_num: 65535\n  nflog_group: 65535\n')).global.queueNum).toBe(65535);
  });
});
