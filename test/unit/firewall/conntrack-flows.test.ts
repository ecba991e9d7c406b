/** The conntrack side of flow lifetimes: the self-heal's purge of ungranted flows, and adoption on a first install. */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import {
  ConntrackFlowCloser,
  FlowCloseError,
  PURGE_SOURCE_LIMIT,
  conntrackAdoptArgs,
  conntrackUnmarkedDeleteArgs,
  conntrackUnmarkedListArgs,
  flowScopeOf,
  flowsBySource,
  parseConntrackList,
  revokedFlowTargets,
  socketKillTupleArgs,
  spawnTool,
  type FlowTarget,
  type ToolResult,
} from '../../../src/firewall/conntrack.js';
import { testConfig } from '../step2/fixtures.js';

const MARK = 0x10000000;
const config = testConfig('JBSWY3DPEHPK3PXP');
const ssh: FlowTarget = { protocol: 'tcp', port: 22, local: true };
const vpn: FlowTarget = { protocol: 'udp', port: 1194, local: true };
const rdp: FlowTarget = { protocol: 'tcp', port: 13389, local: false };

const TCP_LINE = (src: string, sport: number, mark = 0) =>
  `tcp      6 431999 ESTABLISHED src=${src} dst=192.0.2.1 sport=${sport} dport=22 src=192.0.2.1 dst=${src} sport=22 dport=${sport} [ASSURED] mark=${mark} use=1\n`;
const UDP_LINE = (src: string, sport: number) =>
  `udp      17 29 src=${src} dst=192.0.2.1 sport=${sport} dport=1194 [UNREPLIED] src=192.0.2.1 dst=${src} sport=1194 dport=${sport} mark=0 use=1\n`;

describe('conntrack arguments for purge and adoption', () => {
  it('lists and deletes only entries without the grant mark, by family, protocol and original destination port', () => {
    expect(conntrackUnmarkedListArgs(4, ssh, MARK)).toEqual([
      '--dump',
      '--family',
      'ipv4',
      '--proto',
      'tcp',
      '--orig-port-dst',
      '22',
      '--mark',
      '0x0/0x10000000',
    ]);
    expect(conntrackUnmarkedDeleteArgs('2001:db8::7', vpn, MARK)).toEqual([
      '--delete',
      '--family',
      'ipv6',
      '--proto',
      'udp',
      '--orig-port-dst',
      '1194',
      '--orig-src',
      '2001:db8::7',
      '--mark',
      '0x0/0x10000000',
    ]);
    expect(() => conntrackUnmarkedDeleteArgs('10.0.0.1 --flush', ssh, MARK)).toThrow(/not an IPv4 or IPv6 address/);
  });

  it('adoption sets the mark bit on established TCP entries and on every UDP entry of the port', () => {
    expect(conntrackAdoptArgs(6, ssh, MARK)).toEqual([
      '--update',
      '--family',
      'ipv6',
      '--proto',
      'tcp',
      '--orig-port-dst',
      '22',
      '--state',
      'ESTABLISHED',
      '--mark',
      '0x10000000/0x10000000',
    ]);
    expect(conntrackAdoptArgs(4, vpn, 0x4)).toEqual(['--update', '--family', 'ipv4', '--proto', 'udp', '--orig-port-dst', '1194', '--mark', '0x4/0x4']);
  });

  it('kills only the named connections of a source on a local port, IPv6 in brackets', () => {
    expect(socketKillTupleArgs('192.0.2.7', 22, [40000])).toEqual([
      '--kill',
      '--no-header',
      '--tcp',
      '--numeric',
      'sport',
      '=',
      ':22',
      'and',
      '(',
      'dst',
      '192.0.2.7:40000',
      ')',
    ]);
    expect(socketKillTupleArgs('2001:db8::7', 443, [1, 2]).slice(8)).toEqual(['(', 'dst', '[2001:db8::7]:1', 'or', 'dst', '[2001:db8::7]:2', ')']);
  });

  it('the scope of a config: the public HTTPS port, the apps and the grant mark', () => {
    const scope = flowScopeOf({ ...config, global: { ...config.global, step2PublicPort: 8443, grantMark: 0x20 } });
    expect(scope).toEqual({ step2Port: 8443, apps: config.apps, grantMark: 0x20 });
  });
});

describe('parseConntrackList', () => {
  it('reads the original source and source port of TCP and UDP entries, IPv6 canonical', () => {
    const text = `${TCP_LINE('192.0.2.9', 40001)}${UDP_LINE('2001:DB8:0:0::9', 5000)}`;
    expect(parseConntrackList(text)).toEqual([
      { source: '192.0.2.9', sourcePort: 40001 },
      { source: '2001:db8::9', sourcePort: 5000 },
    ]);
  });

  it('leaves out a line the output limit cut, and anything that is not an entry', () => {
    const text = `${TCP_LINE('192.0.2.9', 40001)}conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n${TCP_LINE('192.0.2.8', 1).slice(0, 60)}`;
    expect(parseConntrackList(text)).toEqual([{ source: '192.0.2.9', sourcePort: 40001 }]);
  });

  it('groups source ports by source, for the sources whose flows end', () => {
    const flows = parseConntrackList(`${TCP_LINE('192.0.2.9', 1)}${TCP_LINE('192.0.2.8', 2)}${TCP_LINE('192.0.2.9', 3)}`);
    expect([...flowsBySource(flows, (source) => source !== '192.0.2.8')]).toEqual([['192.0.2.9', [1, 3]]]);
  });
});

/** A fake `conntrack`/`ss`: listings per `proto/port ipvN`, every call recorded. */
function fakeTools(listings: Record<string, string>, options: { fail?: (command: string, args: string[]) => boolean } = {}) {
  const calls: string[] = [];
  const run = async (command: string, args: string[]): Promise<ToolResult> => {
    calls.push(`${command} ${args.join(' ')}`);
    if (options.fail?.(command, args)) return { code: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: simulated' };
    if (command === 'ss' && args.includes('state')) return { code: 0, stdout: listings[`ss ${args.at(-1)}`] ?? '', stderr: '' };
    if (command === 'ss') return { code: 0, stdout: 'ESTAB 0 0 192.0.2.1:22 192.0.2.9:1\n', stderr: '' };
    if (args[0] === '--create') {
      const exists = args.includes('192.0.2.8');
      return {
        code: exists ? 1 : 0,
        stdout: '',
        stderr: `conntrack v1.4.7 (conntrack-tools): ${exists ? 'Operation failed: Such conntrack exists, try -U to update' : '1 flow entries have been created.'}`,
      };
    }
    const key = `${args[args.indexOf('--proto') + 1]}/${args[args.indexOf('--orig-port-dst') + 1]} ${args[args.indexOf('--family') + 1]}`;
    if (args[0] === '--dump') return { code: 0, stdout: listings[key] ?? '', stderr: '' };
    if (args[0] === '--delete') return { code: 0, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.' };
    const updated = listings[key] ? 3 : 0;
    return { code: updated ? 0 : 1, stdout: '', stderr: `conntrack v1.4.7 (conntrack-tools): ${updated} flow entries have been updated.` };
  };
  return { calls, closer: new ConntrackFlowCloser(run) };
}

describe('ConntrackFlowCloser.endUngranted', () => {
  it('ends the unmarked flows of sources without a grant: their own sockets on a local TCP port, then their unmarked entries', async () => {
    const { calls, closer } = fakeTools({
      'tcp/22 ipv4': `${TCP_LINE('192.0.2.9', 40001)}${TCP_LINE('192.0.2.9', 40002)}${TCP_LINE('192.0.2.5', 40003)}`,
      'udp/1194 ipv6': UDP_LINE('2001:db8::9', 5000),
      'tcp/13389 ipv4': TCP_LINE('192.0.2.9', 40004),
    });
    const granted = (source: string, target: FlowTarget) => source === '192.0.2.5' && target.port === 22;
    // ss: 1 socket; each conntrack -D: 2 entries.
    expect(await closer.endUngranted([ssh, vpn, rdp], MARK, granted)).toBe(1 + 2 + 2 + 2);
    const acting = calls.filter((c) => !c.includes('--dump'));
    const killSockets = 'ss --kill --no-header --tcp --numeric sport = :22 and ( dst 192.0.2.9:40001 or dst 192.0.2.9:40002 )';
    const deleteSsh = 'conntrack --delete --family ipv4 --proto tcp --orig-port-dst 22 --orig-src 192.0.2.9 --mark 0x0/0x10000000';
    expect(new Set(acting)).toEqual(
      new Set([
        killSockets,
        deleteSsh,
        // Forwarded (no local socket) and UDP: conntrack only.
        'conntrack --delete --family ipv4 --proto tcp --orig-port-dst 13389 --orig-src 192.0.2.9 --mark 0x0/0x10000000',
        'conntrack --delete --family ipv6 --proto udp --orig-port-dst 1194 --orig-src 2001:db8::9 --mark 0x0/0x10000000',
      ]),
    );
    expect(acting).toHaveLength(4);
    // The RST leaves while the entry is still there.
    expect(acting.indexOf(killSockets)).toBeLessThan(acting.indexOf(deleteSsh));
    expect(calls.filter((c) => c.includes('--dump'))).toHaveLength(6); // 3 ports x 2 families
  });

  it('nothing listed, nothing ended', async () => {
    const { calls, closer } = fakeTools({});
    expect(await closer.endUngranted([ssh], MARK, () => false)).toBe(0);
    expect(calls.every((c) => c.includes('--dump'))).toBe(true);
  });

  it('at most PURGE_SOURCE_LIMIT sources per purge', async () => {
    const many = Array.from({ length: PURGE_SOURCE_LIMIT + 10 }, (_, i) => TCP_LINE(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1000)).join('');
    const { calls, closer } = fakeTools({ 'udp/1194 ipv4': many });
    await closer.endUngranted([vpn], MARK, () => false);
    expect(calls.filter((c) => c.startsWith('conntrack --delete'))).toHaveLength(PURGE_SOURCE_LIMIT);
  });

  it('tries every port, then says which failed', async () => {
    const { calls, closer } = fakeTools({ 'tcp/22 ipv4': TCP_LINE('192.0.2.9', 1) }, { fail: (_c, args) => args[0] === '--dump' && args.includes('1194') });
    const failure = closer.endUngranted([vpn, ssh], MARK, () => false);
    await expect(failure).rejects.toThrow(FlowCloseError);
    await expect(failure).rejects.toThrow(/udp\/1194 IPv4 listing: .*simulated/);
    expect(calls.some((c) => c.startsWith('conntrack --delete') && c.includes('--orig-port-dst 22'))).toBe(true);
  });
});

describe('ConntrackFlowCloser.adopt', () => {
  it("creates the entries a local TCP port's established connections lack (one that exists is fine), then marks", async () => {
    const sockets = ['0 0 192.0.2.1:22 192.0.2.9:40001', '0 0 [::ffff:192.0.2.1]:22 [::ffff:192.0.2.8]:40002', '0 0 [2001:db8::1]:22 [2001:db8::9]:40003'];
    const { calls, closer } = fakeTools({ 'ss :22': `${sockets.join('\n')}\n`, 'tcp/22 ipv4': 'x', 'tcp/22 ipv6': 'x' });
    expect(await closer.adopt([ssh, vpn, rdp], MARK)).toBe(6);
    expect(calls.slice(0, 4)).toEqual([
      'ss --no-header --tcp --numeric state established sport = :22',
      'conntrack --create --proto tcp --orig-src 192.0.2.9 --orig-dst 192.0.2.1 --orig-port-src 40001 --orig-port-dst 22 --state ESTABLISHED --timeout 432000 --status ASSURED,SEEN_REPLY',
      'conntrack --create --proto tcp --orig-src 192.0.2.8 --orig-dst 192.0.2.1 --orig-port-src 40002 --orig-port-dst 22 --state ESTABLISHED --timeout 432000 --status ASSURED,SEEN_REPLY',
      'conntrack --create --proto tcp --orig-src 2001:db8::9 --orig-dst 2001:db8::1 --orig-port-src 40003 --orig-port-dst 22 --state ESTABLISHED --timeout 432000 --status ASSURED,SEEN_REPLY',
    ]);
    // UDP and forwarded ports: no socket to read, the mark only.
    expect(calls.filter((c) => c.startsWith('ss'))).toHaveLength(1);
    expect(calls.slice(4).every((c) => c.startsWith('conntrack --update'))).toBe(true);
  });

  it('marks per port and family and counts what conntrack updated; none updated is no error', async () => {
    const { calls, closer } = fakeTools({ 'tcp/22 ipv4': 'x' });
    expect(await closer.adopt([ssh, vpn], MARK)).toBe(3);
    expect(calls.filter((c) => !c.startsWith('ss'))).toEqual([
      'conntrack --update --family ipv4 --proto tcp --orig-port-dst 22 --state ESTABLISHED --mark 0x10000000/0x10000000',
      'conntrack --update --family ipv6 --proto tcp --orig-port-dst 22 --state ESTABLISHED --mark 0x10000000/0x10000000',
      'conntrack --update --family ipv4 --proto udp --orig-port-dst 1194 --mark 0x10000000/0x10000000',
      'conntrack --update --family ipv6 --proto udp --orig-port-dst 1194 --mark 0x10000000/0x10000000',
    ]);
  });

  it('a failure is reported after every port was tried', async () => {
    const { calls, closer } = fakeTools({}, { fail: (_c, args) => args.includes('ipv6') });
    await expect(closer.adopt([ssh, vpn], MARK)).rejects.toThrow(/tcp\/22 IPv6: .*simulated.*udp\/1194 IPv6/);
    expect(calls.filter((c) => c.startsWith('conntrack'))).toHaveLength(4);
  });

  it('covers the HTTPS port and every app port, like a full revoke', () => {
    const apps: AppConfig[] = config.apps;
    expect(revokedFlowTargets({ step2Port: 443, apps }).map((t) => `${t.protocol}/${t.port}`)).toEqual(['tcp/443', 'tcp/1194', 'tcp/22']);
  });
});

describe('spawnTool and conntrack listings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'knock-port-conntrack-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps a listing's stdout (deletions' is discarded)", async () => {
    writeFileSync(
      join(dir, 'conntrack'),
      `#!/bin/sh\nprintf '%s' '${TCP_LINE('192.0.2.9', 40001).trim()}'; echo; echo 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.' >&2\n`,
    );
    chmodSync(join(dir, 'conntrack'), 0o755);
    const run = spawnTool(['env', `PATH=${dir}:${process.env.PATH ?? ''}`]);
    const listed = await run('conntrack', conntrackUnmarkedListArgs(4, ssh, MARK));
    expect(parseConntrackList(listed.stdout)).toEqual([{ source: '192.0.2.9', sourcePort: 40001 }]);
    expect((await run('conntrack', conntrackUnmarkedDeleteArgs('192.0.2.9', ssh, MARK))).stdout).toBe('');
  });
});
