// The revoke journal: what it keeps across a reopen, when it forgets, and its file format.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REVOKE_JOURNAL_FILE, RevokeJournal, parseRevokeJournal, serializeRevokeJournal } from '../../../src/cluster/revoke-journal.js';

describe('RevokeJournal', () => {
  let dir: string;
  let now = 1_000_000;
  const clock = () => now;
  const open = () => RevokeJournal.open(dir, (reason) => expect.fail(`unreadable: ${reason}`), clock);
  const entry = (id: string, shared = false, keepUntil = now + 60_000) => ({ id, text: `text-${id}`, keepUntil, shared });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kp-revoke-journal-'));
    now = 1_000_000;
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('keeps revokes and their shared state across a reopen', async () => {
    const journal = open();
    await journal.record(entry('a'));
    await journal.record(entry('b', true));
    expect(
      open()
        .pending()
        .map((e) => e.id),
    ).toEqual(['a']);
    await journal.markShared('a');
    const again = open();
    expect(again.pending()).toEqual([]);
    expect(again.list().map((e) => [e.id, e.shared])).toEqual([
      ['a', true],
      ['b', true],
    ]);
  });

  it('never makes a shared revoke pending again, and keeps the later keepUntil', async () => {
    const journal = open();
    await journal.record(entry('a', true, now + 10_000));
    await journal.record(entry('a', false, now + 20_000));
    expect(open().list()).toEqual([{ id: 'a', text: 'text-a', shared: true, keepUntil: now + 20_000 }]);
  });

  it('forgets a revoke once it outlived every grant it covers, in memory and in the file', async () => {
    const journal = open();
    await journal.record(entry('old', false, now + 1000));
    await journal.record(entry('new', false, now + 5000));
    now += 2000;
    expect(journal.list().map((e) => e.id)).toEqual(['new']);
    expect(
      open()
        .list()
        .map((e) => e.id),
    ).toEqual(['new']);
    await journal.record(entry('newer'));
    const saved = parseRevokeJournal(await readFile(join(dir, REVOKE_JOURNAL_FILE), 'utf8'));
    expect(saved.kind === 'ok' && saved.entries.map((e) => e.id)).toEqual(['new', 'newer']);
  });

  it('writes one change at a time, the last write holding every change', async () => {
    const journal = open();
    await Promise.all(Array.from({ length: 20 }, (_, i) => journal.record(entry(`r${i}`))));
    expect(open().list()).toHaveLength(20);
  });

  it('reports an unreadable file and starts empty', async () => {
    for (const text of ['{', '{"version":2,"revokes":[]}', '{"version":1,"revokes":[{"id":""}]}']) {
      await writeFile(join(dir, REVOKE_JOURNAL_FILE), text);
      const reasons: string[] = [];
      expect(RevokeJournal.open(dir, (reason) => reasons.push(reason), clock).list()).toEqual([]);
      expect(reasons).toHaveLength(1);
    }
  });

  it('round-trips its format', async () => {
    const entries = [entry('x'), entry('y', true)];
    expect(parseRevokeJournal(serializeRevokeJournal(entries))).toEqual({ kind: 'ok', entries });
  });

  it('keeps nothing on disk without a path', async () => {
    const journal = new RevokeJournal('', [], clock);
    await journal.record(entry('m'));
    expect(journal.pending()).toHaveLength(1);
  });
});
