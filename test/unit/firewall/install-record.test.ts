/** The install record: what `run` installed, enough to remove it without the config it came from. */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import {
  configForUninstall,
  forgetInstalls,
  installRecordPath,
  InstallRecordError,
  readInstallRecord,
  recordInstall,
  type InstalledFirewall,
} from '../../../src/firewall/install-record.js';

const root = mkdtempSync(join(tmpdir(), 'kp-install-record-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let count = 0;
const stateDir = () => join(root, `state-${++count}`);

const NFT: InstalledFirewall = { firewallType: 'nftables', tableName: 'knockport', iptablesVariant: 'default', controlSocket: '/run/knock-port/control.sock' };
const IPT: InstalledFirewall = { firewallType: 'iptables', tableName: 'gate', iptablesVariant: 'legacy', controlSocket: '/run/kp.sock' };

describe('the install record', () => {
  it('is missing until something is recorded; the state directory is created', () => {
    const dir = stateDir();
    expect(readInstallRecord(dir)).toBeUndefined();
    recordInstall(dir, NFT);
    expect(readInstallRecord(dir)).toEqual([NFT]);
    expect(JSON.parse(readFileSync(installRecordPath(dir), 'utf8'))).toEqual({ version: 1, installs: [NFT] });
  });

  it('keeps every distinct install (a table renamed since stays recorded); the same objects again replace the older entry', () => {
    const dir = stateDir();
    recordInstall(dir, NFT);
    recordInstall(dir, IPT);
    recordInstall(dir, { ...NFT, controlSocket: '/run/other.sock' });
    expect(readInstallRecord(dir)).toEqual([IPT, { ...NFT, controlSocket: '/run/other.sock' }]);
  });

  it('forgets what was removed, and goes with the last entry', () => {
    const dir = stateDir();
    recordInstall(dir, NFT);
    recordInstall(dir, IPT);
    forgetInstalls(dir, [IPT]);
    expect(readInstallRecord(dir)).toEqual([NFT]);
    forgetInstalls(dir, [NFT]);
    expect(existsSync(installRecordPath(dir))).toBe(false);
  });

  it('is not trusted when knock-port did not write it', () => {
    const dir = stateDir();
    recordInstall(dir, NFT);
    writeFileSync(installRecordPath(dir), '{"version": 1, "installs": [{"firewallType": "pf"}]}');
    expect(() => readInstallRecord(dir)).toThrow(/is not one knock-port wrote; remove the rules with knock-port uninstall -c CONFIG/);
    writeFileSync(installRecordPath(dir), 'not json');
    expect(() => readInstallRecord(dir)).toThrow(InstallRecordError);
  });

  it('says what to do when the state directory cannot be written (run stops before touching the firewall)', () => {
    const file = join(root, 'a-file');
    writeFileSync(file, '');
    expect(() => recordInstall(join(file, 'state'), NFT)).toThrow(
      /^cannot record the firewall install in .*make state_dir writable by the daemon's user \(nothing was installed\)$/,
    );
  });
});

describe('a firewall rebuilt from the record', () => {
  it('is the recorded type and table, with both address families', () => {
    const nft = createFirewall(configForUninstall(NFT, 'record'));
    expect(nft.type).toBe('nftables');
    expect(nft.render('nflog')).toMatch(/^add table inet knockport$/m);
    expect(nft.render('nflog')).toContain('step2_v6');

    const iptables = createFirewall(configForUninstall(IPT, 'record'), { iptablesVariant: IPT.iptablesVariant });
    expect(iptables.type).toBe('iptables');
    expect(iptables.render('nflog')).toMatch(/create gate-step2-v6 /);
    expect(iptables.render('nflog')).toMatch(/^:GATE-INPUT /m);
  });

  it('carries the recorded control socket, to tell whether a daemon still runs', () => {
    expect(configForUninstall(IPT, 'record').global.controlSocket).toBe('/run/kp.sock');
  });
});
