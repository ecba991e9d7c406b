/**
 * Who owns knock-port's nftables table: the daemon's libnftables socket where the kernel keeps
 * owned tables (owner + persist, Linux 6.9+), nobody elsewhere (the install then is exactly as
 * before). The kernel side is test/kernel/firewall/table-owner.test.ts.
 */
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { HostFirewall } from '../../../src/firewall/host-firewall.js';
import { Firewall } from '../../../src/firewall/firewall.js';
import { NftablesDriver, tablePresent, withoutTableDeclaration } from '../../../src/firewall/nftables/backend.js';
import {
  tableOwnershipSupport,
  type NftRunner,
  type NftTable,
  type TableOwnershipOutcome,
  type TableOwnershipSupport,
} from '../../../src/firewall/nft-runner.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { fixtureConfig } from './fixture.js';

const { EOPNOTSUPP, EPERM, EINVAL } = constants.errno;
const config = fixtureConfig();
const plan = planFirewall(config);
const TABLE: NftTable = { family: 'inet', name: 'knockport' };

const host = {
  reconcile: async () => {},
  remove: async () => {},
  report: () => ({ inserted: [], problems: [] }),
  describeRules: () => '',
} as unknown as HostFirewall;

interface Recorder {
  runner: NftRunner;
  /** Every script run (writes and listings) and every ownTable call, in order. */
  log: string[];
}

/**
 * A libnftables-like runner. `support` undefined: a runner that cannot own (the `nft` command).
 * `tables`: what `list tables` prints.
 */
function recorder(options: { support?: TableOwnershipSupport; ownErrno?: number; tables?: string; refuseDelete?: boolean } = {}): Recorder {
  const log: string[] = [];
  const run = (script: string, o: { json?: boolean } = {}): string => {
    log.push(script);
    if (script.startsWith('list tables')) return options.tables ?? '';
    if (script.startsWith('delete table') && options.refuseDelete) throw new Error('nft failed: Error: Could not process rule: Operation not permitted');
    return o.json ? '{"nftables": [{"rule": {}}]}' : '';
  };
  const runner: NftRunner = {
    kind: 'libnftables',
    run,
    runAsync: async (script, o) => run(script, o),
    ...(options.support
      ? {
          tableOwnership: () => options.support!,
          ownTable: async (table: NftTable): Promise<TableOwnershipOutcome> => {
            log.push(`own ${table.family} ${table.name}`);
            const errno = options.ownErrno ?? 0;
            return errno === 0 ? { owned: true } : { owned: false, errno, reason: `refused ${errno}` };
          },
        }
      : {}),
  };
  return { runner, log };
}

const firewall = (runner: NftRunner, type: 'nftables' | 'vyos' = 'nftables') =>
  new Firewall(new NftablesDriver(plan, 'knockport', runner, type), config.apps, host);
const declaration = 'add table inet knockport';

describe('table ownership: the decision', () => {
  it('owner and persist only where the kernel accepts both; owner alone never', () => {
    expect(tableOwnershipSupport(0, '6.18.1')).toEqual({ supported: true });
    const old = tableOwnershipSupport(EOPNOTSUPP, '6.1.0-57-amd64');
    expect(old.supported).toBe(false);
    expect(!old.supported && old.reason).toBe('kernel 6.1.0-57-amd64 lacks the table flag persist (Linux 6.9+)');
    expect(tableOwnershipSupport(undefined, '6.18.1')).toMatchObject({ supported: false, reason: expect.stringMatching(/rebuild/) as unknown });
    expect(tableOwnershipSupport(EINVAL, '6.18.1')).toMatchObject({ supported: false, reason: expect.stringMatching(/EINVAL/) as unknown });
  });

  it('without support the install is exactly as before: the table declared, never owned', async () => {
    const reason = 'kernel 6.1 lacks the table flag persist (Linux 6.9+)';
    // The `nft` command (no ownTable at all), and libnftables on a kernel without persist.
    for (const r of [recorder(), recorder({ support: { supported: false, reason } })]) {
      const fw = firewall(r.runner);
      await fw.install('nflog');
      expect(r.log).toEqual([fw.driver.ruleset.installScript('nflog')]);
      expect(fw.tableOwnership()?.owned).toBe(false);
    }
    const r = recorder({ support: { supported: false, reason } });
    const fw = firewall(r.runner);
    await fw.install('nflog');
    expect(fw.tableOwnership()?.summary).toBe(`table inet knockport not owned (${reason}): a host \`nft flush ruleset\` removes it until the next self-heal`);
  });

  it('with support the table is owned first, then filled without being declared (nft would send flags 0)', async () => {
    const r = recorder({ support: { supported: true } });
    const fw = firewall(r.runner);
    await fw.install('nfqueue');
    expect(r.log[0]).toBe('own inet knockport');
    const full = fw.driver.ruleset.installScript('nfqueue');
    expect(full.split('\n')).toContain(declaration);
    expect(r.log[1]).toBe(withoutTableDeclaration(full, TABLE));
    expect(r.log[1]!.split('\n')).not.toContain(declaration);
    expect(r.log[1]!.split('\n').length).toBe(full.split('\n').length - 1);
    expect(fw.tableOwnership()).toEqual({
      owned: true,
      summary: 'table inet knockport owned by this daemon (table flags owner, persist): a host `nft flush ruleset` or `nft delete table` leaves it in place',
    });
  });

  it('every self-heal tick owns it again (adopts it after the libnftables thread was replaced)', async () => {
    const r = recorder({ support: { supported: true } });
    const fw = firewall(r.runner);
    await fw.install('nflog');
    r.log.length = 0;
    expect(await fw.ensureInstalled('nflog')).toBe(false);
    expect(r.log[0]).toBe('own inet knockport');
  });

  it('a table made without persist stays declared and unowned, and says how to fix it', async () => {
    const r = recorder({ support: { supported: true }, ownErrno: EOPNOTSUPP });
    const fw = firewall(r.runner);
    await fw.install('nflog');
    expect(r.log[1]).toBe(fw.driver.ruleset.installScript('nflog'));
    expect(fw.tableOwnership()).toEqual({ owned: false, summary: `table inet knockport not owned: refused ${EOPNOTSUPP}` });
  });

  it('a table another process owns stops the install before anything is sent', async () => {
    const r = recorder({ support: { supported: true }, ownErrno: EPERM });
    await expect(firewall(r.runner).install('nflog')).rejects.toThrow(/stop it first/);
    expect(r.log).toEqual(['own inet knockport']);
  });

  it('VyOS owns the table of its own too, never one of the tables a VyOS commit rebuilds', async () => {
    const vyos = recorder({ support: { supported: true } });
    await firewall(vyos.runner, 'vyos').install('nflog');
    expect(vyos.log.filter((l) => l.startsWith('own '))).toEqual(['own inet knockport']);
  });
});

describe('uninstall', () => {
  it('deletes the tables that exist, without declaring them (an orphaned persist table refuses `add table`)', async () => {
    const r = recorder({ tables: 'table inet filter\ntable inet knockport\n' });
    await firewall(r.runner).uninstall();
    expect(r.log).toEqual(['list tables\n', 'delete table inet knockport\n']);
    const none = recorder({ tables: 'table inet filter\n' });
    await firewall(none.runner).uninstall();
    expect(none.log).toEqual(['list tables\n']);
  });

  it('a table a running daemon owns: says to stop it', async () => {
    const r = recorder({ tables: 'table inet knockport\n', refuseDelete: true });
    await expect(firewall(r.runner).uninstall()).rejects.toThrow(/a running process owns table inet knockport \(knock-port's daemon\): stop it/);
  });

  it('reads `nft list tables` text', () => {
    expect(tablePresent('table ip nat\ntable inet knockport\n', TABLE)).toBe(true);
    expect(tablePresent('table inet knockport_probe\n', TABLE)).toBe(false);
  });
});
