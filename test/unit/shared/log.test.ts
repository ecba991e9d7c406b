import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, logsGoToJournal } from '../../../src/shared/log.js';

function sink(): { stream: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

function logEveryLevel(journal?: boolean): string[] {
  const out = sink();
  const logger = createLogger('trace', out.stream, journal === undefined ? {} : { journal });
  logger.trace('t');
  logger.debug('d');
  logger.info('i');
  logger.warn('w');
  logger.error({ access_key: 'hunter2' }, 'e');
  logger.fatal('f');
  return out.lines();
}

describe('logs for journald', () => {
  it('prefixes each line with its syslog priority, the rest staying JSON (redaction kept)', () => {
    const lines = logEveryLevel(true);
    expect(lines.map((line) => /^<(\d)>/.exec(line)?.[1])).toEqual(['7', '7', '6', '4', '3', '2']);
    const records = lines.map((line) => JSON.parse(line.slice(3)) as Record<string, unknown>);
    expect(records.map((r) => r.msg)).toEqual(['t', 'd', 'i', 'w', 'e', 'f']);
    expect(records.map((r) => r.level)).toEqual([10, 20, 30, 40, 50, 60]);
    expect(records[4]!.access_key).toBe('[redacted]');
    expect(lines.join('\n')).not.toContain('hunter2');
  });

  it('keeps the level: lines below it are not written at all', () => {
    const out = sink();
    const logger = createLogger('warn', out.stream, { journal: true });
    logger.info('quiet');
    logger.warn('loud');
    expect(out.lines()).toHaveLength(1);
    expect(out.lines()[0]).toMatch(/^<4>\{.*"msg":"loud"/);
  });

  it('writes plain JSON lines without it', () => {
    for (const line of logEveryLevel()) expect(() => JSON.parse(line) as unknown).not.toThrow();
    for (const line of logEveryLevel(false)) expect(line.startsWith('{')).toBe(true);
  });

  describe('JOURNAL_STREAM detection (device:inode of the fd)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-journal-'));
    const fd = openSync(join(dir, 'out'), 'w');
    afterAll(() => {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    });
    const stat = fstatSync(fd, { bigint: true });

    it('is the journal when JOURNAL_STREAM names that fd', () => {
      expect(logsGoToJournal({ JOURNAL_STREAM: `${stat.dev}:${stat.ino}` }, fd)).toBe(true);
    });

    it('is not when JOURNAL_STREAM is unset, or names another file (output redirected)', () => {
      expect(logsGoToJournal({}, fd)).toBe(false);
      expect(logsGoToJournal({ JOURNAL_STREAM: `${stat.dev}:${stat.ino + 1n}` }, fd)).toBe(false);
      expect(logsGoToJournal({ JOURNAL_STREAM: 'garbage' }, fd)).toBe(false);
    });
  });
});

describe('the time field', () => {
  it('is epoch milliseconds by default and ISO 8601 in UTC with time: iso', () => {
    const epoch = sink();
    createLogger('info', epoch.stream).info('x');
    expect(epoch.lines()[0]).toMatch(/^\{"level":30,"time":\d{13},/);
    const iso = sink();
    createLogger('info', iso.stream, { time: 'iso' }).info('x');
    expect(iso.lines()[0]).toMatch(/^\{"level":30,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",/);
  });

  it('is ISO behind the journal prefix too', () => {
    const out = sink();
    createLogger('info', out.stream, { journal: true, time: 'iso' }).info('x');
    expect(out.lines()[0]).toMatch(/^<6>\{"level":30,"time":"\d{4}-[^"]+Z",/);
  });
});
