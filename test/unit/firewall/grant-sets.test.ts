/**
 * The grant queue every backend shares (batching per event-loop turn, serial order, each
 * caller's own outcome), the nft script a batch becomes, and the long-lived ipset session
 * (answers per line, a dead session restarted, never a grant lost in silence). The kernel
 * side is covered by test/kernel/firewall/grant-burst.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { GrantSets, type GrantChange, type GrantEntry, type GrantSetDriver } from '../../../src/firewall/grant-sets.js';
import { parseSavedRules } from '../../../src/firewall/iptables/backend.js';
import { IpsetGrantDriver, ipsetLine } from '../../../src/firewall/iptables/grant-sets.js';
import { IpsetSession, IpsetSessionError } from '../../../src/firewall/iptables/ipset-session.js';
import { IptablesRuleset } from '../../../src/firewall/iptables/ruleset.js';
import { nftGrantScript } from '../../../src/firewall/nftables/grant-sets.js';
import { NftRuleset } from '../../../src/firewall/nftables/ruleset.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { fixtureConfig } from './fixture.js';

/** Records every batch; answers from `outcome` (per change) or fails whole batches `failBatch` says. */
class FakeDriver implements GrantSetDriver {
  readonly batches: GrantChange[][] = [];
  readonly events: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(
    private readonly options: {
      outcome?: (c: GrantChange) => Error | undefined;
      failBatch?: (changes: readonly GrantChange[]) => boolean;
      delayMs?: number;
    } = {},
  ) {}

  async apply(changes: readonly GrantChange[]): Promise<Array<Error | undefined>> {
    this.batches.push([...changes]);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, this.options.delayMs ?? 1));
    this.inFlight--;
    for (const c of changes) this.events.push(`${c.op} ${c.key.address}`);
    if (this.options.failBatch?.(changes)) throw new Error(`batch of ${changes.length} failed`);
    return changes.map((c) => this.options.outcome?.(c));
  }

  async list(): Promise<GrantEntry[]> {
    this.events.push('list');
    return [{ address: '10.0.0.1', expiresInSeconds: 5 }];
  }
}

describe('grant queue', () => {
  it('sends every grant asked for in the same turn in one batch, and resolves each caller', async () => {
    const driver = new FakeDriver();
    const sets = new GrantSets(driver);
    const ips = Array.from({ length: 50 }, (_, i) => `10.1.0.${i}`);
    await Promise.all(ips.map((ip) => sets.add('step2', 4, { address: ip }, 30)));
    expect(driver.batches).toHaveLength(1);
    expect(driver.batches[0]!.map((c) => c.key.address)).toEqual(ips);
    expect(sets.pending).toBe(0);
  });

  it('keeps one batch in flight at a time, in the order asked, and a list sees the changes before it', async () => {
    const driver = new FakeDriver({ delayMs: 5 });
    const sets = new GrantSets(driver);
    const first = [sets.add('step2', 4, { address: '10.0.0.1' }, 30), sets.add('step2', 4, { address: '10.0.0.2' }, 30)];
    await new Promise((r) => setImmediate(r)); // the first batch is in flight now
    const second = [
      sets.delete('step2', 4, { address: '10.0.0.1' }),
      sets.list('step2', 4),
      sets.add('service', 6, { address: 'fd00::1', protocol: 'tcp', port: 22 }, 60),
    ];
    await Promise.all([...first, ...second]);
    expect(driver.maxInFlight).toBe(1);
    expect(driver.events).toEqual(['add 10.0.0.1', 'add 10.0.0.2', 'delete 10.0.0.1', 'list', 'add fd00::1']);
    expect(driver.batches.map((b) => b.length)).toEqual([2, 1, 1]);
  });

  it('splits a burst larger than maxBatch into several transactions', async () => {
    const driver = new FakeDriver();
    const sets = new GrantSets(driver, { maxBatch: 256 });
    await Promise.all(Array.from({ length: 600 }, (_, i) => sets.add('step2', 4, { address: `10.2.${i >> 8}.${i & 255}` }, 30)));
    expect(driver.batches.map((b) => b.length)).toEqual([256, 256, 88]);
  });

  it('a change the driver refuses fails only its own caller', async () => {
    const driver = new FakeDriver({ outcome: (c) => (c.key.address === '10.0.0.66' ? new Error('set is full') : undefined) });
    const sets = new GrantSets(driver);
    const results = await Promise.allSettled(['10.0.0.65', '10.0.0.66', '10.0.0.67'].map((ip) => sets.add('step2', 4, { address: ip }, 30)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('set is full');
    expect(driver.batches).toHaveLength(1);
  });

  it('a batch that fails as a whole is retried change by change: each caller gets its own outcome', async () => {
    // One bad element fails the whole transaction (as nft does); alone, only it fails.
    const driver = new FakeDriver({ failBatch: (changes) => changes.some((c) => c.key.address === '10.0.0.9') });
    const sets = new GrantSets(driver);
    const results = await Promise.allSettled(['10.0.0.8', '10.0.0.9', '10.0.0.10'].map((ip) => sets.add('step2', 4, { address: ip }, 30)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason.message)).toContain('failed');
    expect(driver.batches.map((b) => b.length)).toEqual([3, 1, 1, 1]);
  });

  it('never asks for a timeout under one second', async () => {
    const driver = new FakeDriver();
    await new GrantSets(driver).add('step2', 4, { address: '10.0.0.1' }, 0.2);
    expect(driver.batches[0]![0]).toMatchObject({ op: 'add', ttlSeconds: 1 });
  });
});

describe('nft script for a batch', () => {
  const ruleset = new NftRuleset(planFirewall(fixtureConfig()), 'knockport');

  it('groups a batch per set into one add/delete/add (refresh), keeps the order of adds and deletes, and the last timeout of a repeat', () => {
    const changes: GrantChange[] = [
      { op: 'add', kind: 'step2', family: 4, key: { address: '10.0.0.1' }, ttlSeconds: 30 },
      { op: 'add', kind: 'step2', family: 4, key: { address: '10.0.0.2' }, ttlSeconds: 30 },
      { op: 'add', kind: 'service', family: 6, key: { address: 'fd00::7', protocol: 'udp', port: 1194 }, ttlSeconds: 60 },
      { op: 'add', kind: 'step2', family: 4, key: { address: '10.0.0.1' }, ttlSeconds: 90 },
      { op: 'delete', kind: 'step2', family: 4, key: { address: '10.0.0.2' } },
    ];
    expect(nftGrantScript(ruleset, changes)).toBe(
      [
        'add element inet knockport step2_v4 { 10.0.0.2 timeout 30s, 10.0.0.1 timeout 90s }',
        'delete element inet knockport step2_v4 { 10.0.0.2, 10.0.0.1 }',
        'add element inet knockport step2_v4 { 10.0.0.2 timeout 30s, 10.0.0.1 timeout 90s }',
        'add element inet knockport service_v6 { fd00::7 . udp . 1194 timeout 60s }',
        'delete element inet knockport service_v6 { fd00::7 . udp . 1194 }',
        'add element inet knockport service_v6 { fd00::7 . udp . 1194 timeout 60s }',
        'add element inet knockport step2_v4 { 10.0.0.2 timeout 1s }',
        'delete element inet knockport step2_v4 { 10.0.0.2 }',
        '',
      ].join('\n'),
    );
  });
});

/**
 * A stand-in for `ipset -` in interactive mode: a prompt before each line read, an error
 * line for an entry containing `bad`, no answer at all for `hang`; `crash` mode exits on its
 * second line (after answering the first), `dead` mode on its first; `absent` never starts.
 */
const FAKE_IPSET = `
const mode = process.argv[1];
const out = (s) => process.stdout.write(s);
if (mode === 'absent') { out("stdbuf: failed to run command 'ipset': No such file or directory\\n"); process.exit(127); }
out('ipset> ');
let n = 0, buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    n++;
    if ((mode === 'crash' && n === 2) || mode === 'dead') process.exit(3);
    if (line.includes('hang')) continue;
    if (line.includes('bad')) out('ipset v7.17: Syntax error: cannot parse ' + line.split(' ')[2] + '\\n');
    out('ipset> ');
  }
});
process.stdin.on('end', () => process.exit(0));
`;

function fakeIpset(modes: string[]): { spawn: () => ChildProcess; children: ChildProcess[] } {
  const children: ChildProcess[] = [];
  return {
    children,
    spawn: () => {
      const child = spawn(process.execPath, ['-e', FAKE_IPSET, modes[Math.min(children.length, modes.length - 1)]!], { stdio: ['pipe', 'pipe', 'pipe'] });
      children.push(child);
      return child;
    },
  };
}

describe('ipset session', () => {
  it('answers each line on its own: empty for done, the error for a refused line', async () => {
    const session = new IpsetSession({ spawn: fakeIpset(['ok']).spawn });
    try {
      // Started ahead (as install does): the grants below use that session.
      session.start();
      expect(session.starts).toBe(1);
      expect(await session.run(['add s 10.0.0.1 timeout 5 -exist', 'add s bad-entry timeout 5 -exist', 'add s 10.0.0.2 timeout 5 -exist'])).toEqual([
        '',
        'ipset v7.17: Syntax error: cannot parse bad-entry',
        '',
      ]);
      expect(await session.run(['del s 10.0.0.1 -exist'])).toEqual(['']);
      expect(session.starts).toBe(1);
    } finally {
      session.close();
    }
  });

  it('a session that dies rejects its pending lines, and the next call starts a new one', async () => {
    const fake = fakeIpset(['ok']);
    const session = new IpsetSession({ spawn: fake.spawn });
    try {
      const stuck = session.run(['add s hang timeout 5 -exist']);
      await new Promise((r) => setTimeout(r, 50));
      fake.children[0]!.kill('SIGKILL');
      await expect(stuck).rejects.toThrow(IpsetSessionError);
      await expect(stuck).rejects.toThrow(/ipset session ended \(killed by SIGKILL\)/);
      expect(await session.run(['add s 10.0.0.3 timeout 5 -exist'])).toEqual(['']);
      expect(session.starts).toBe(2);
    } finally {
      session.close();
    }
  });

  it('a line that never gets an answer kills the session after the line timeout', async () => {
    const session = new IpsetSession({ spawn: fakeIpset(['ok']).spawn, lineTimeoutMs: 1500 });
    try {
      await expect(session.run(['add s hang timeout 5 -exist'])).rejects.toThrow(/did not answer within 1.5 s/);
      expect(await session.run(['add s 10.0.0.4 timeout 5 -exist'])).toEqual(['']);
    } finally {
      session.close();
    }
  });

  it('refuses a line that would shift every answer after it', async () => {
    const session = new IpsetSession({ spawn: fakeIpset(['ok']).spawn });
    await expect(session.run(['add s 10.0.0.1\nflush s'])).rejects.toThrow(/not an ipset command line/);
    await expect(session.run([''])).rejects.toThrow(/not an ipset command line/);
    session.close();
  });
});

describe('ipset grants through the queue and the session', () => {
  const ruleset = new IptablesRuleset(planFirewall(fixtureConfig()), 'knockport');
  const noCommands = { run: () => '' };

  it('writes add/del lines with -exist, one per change', () => {
    expect(ipsetLine(ruleset, { op: 'add', kind: 'service', family: 6, key: { address: 'fd00::7', protocol: 'udp', port: 1194 }, ttlSeconds: 60 })).toBe(
      'add knockport-service-v6 fd00::7,udp:1194 timeout 60 -exist',
    );
    expect(ipsetLine(ruleset, { op: 'delete', kind: 'step2', family: 4, key: { address: '10.0.0.1' } })).toBe('del knockport-step2-v4 10.0.0.1 -exist');
  });

  it('a refused entry fails its caller only; the others of the batch land', async () => {
    const session = new IpsetSession({ spawn: fakeIpset(['ok']).spawn });
    const sets = new GrantSets(new IpsetGrantDriver(session, noCommands, ruleset));
    try {
      const results = await Promise.allSettled(['10.0.0.1', 'bad', '10.0.0.3'].map((address) => sets.add('step2', 4, { address }, 30)));
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(String((results[1] as PromiseRejectedResult).reason.message)).toMatch(
        /ipset add knockport-step2-v4 bad timeout 30 -exist failed: .*cannot parse bad/,
      );
      expect(session.starts).toBe(1);
    } finally {
      sets.close();
    }
  });

  it('a session that dies in the middle of a batch is restarted and every grant of the batch still lands', async () => {
    const fake = fakeIpset(['crash', 'ok']);
    const session = new IpsetSession({ spawn: fake.spawn });
    const sets = new GrantSets(new IpsetGrantDriver(session, noCommands, ruleset));
    try {
      await Promise.all(['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((address) => sets.add('step2', 4, { address }, 30)));
      expect(session.starts).toBe(2);
    } finally {
      sets.close();
    }
  });

  it('when every session dies, each caller hears of it: no grant is lost in silence', async () => {
    const session = new IpsetSession({ spawn: fakeIpset(['dead']).spawn });
    const sets = new GrantSets(new IpsetGrantDriver(session, noCommands, ruleset));
    try {
      const results = await Promise.allSettled(['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((address) => sets.add('step2', 4, { address }, 30)));
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      for (const r of results)
        expect(String((r as PromiseRejectedResult).reason.message)).toMatch(/ipset session ended \(exit status 3\).*restarted on the next grant/);
      // The whole batch, then each change alone on a fresh session.
      expect(session.starts).toBe(4);
    } finally {
      sets.close();
    }
  });
});

describe('ipset grants when ipset cannot run at all', () => {
  it('fails the whole batch at once with what to install, without a session per grant', async () => {
    const ruleset = new IptablesRuleset(planFirewall(fixtureConfig()), 'knockport');
    const session = new IpsetSession({ spawn: fakeIpset(['absent']).spawn });
    const sets = new GrantSets(new IpsetGrantDriver(session, { run: () => '' }, ruleset));
    const results = await Promise.allSettled(['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((address) => sets.add('step2', 4, { address }, 30)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason.message)).toMatch(/exit status 127.*No such file.*needs ipset and stdbuf/);
    expect(session.starts).toBe(1);
  });
});

describe('self-heal reads iptables-save once per family', () => {
  it('finds jumps by table and counts the step-1 rules', () => {
    const ruleset = new IptablesRuleset(planFirewall(fixtureConfig()), 'knockport');
    const jumps = ruleset.jumps();
    const text = [
      '*raw',
      ...jumps.filter((j) => j.table === 'raw').map((j) => `-A ${j.from} -j ${j.to}`),
      'COMMIT',
      '*filter',
      '-A INPUT -p tcp --dport 22 -j ACCEPT',
      `-A ${ruleset.chain('STEP1')} -p tcp -j DROP`,
      'COMMIT',
    ].join('\n');
    const saved = parseSavedRules(text, jumps, ruleset.chain('STEP1'));
    expect(saved.step1Rules).toBe(1);
    expect(saved.jumps.size).toBe(jumps.filter((j) => j.table === 'raw').length);
    expect(jumps.some((j) => j.table !== 'raw')).toBe(true);
  });
});
