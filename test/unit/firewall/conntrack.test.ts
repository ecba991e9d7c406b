import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import {
  ConntrackFlowCloser,
  FlowCloseError,
  conntrackDeleteArgs,
  revokedFlowTargets,
  socketKillArgs,
  spawnTool,
  type ToolResult,
} from '../../../src/firewall/conntrack.js';
import { testConfig } from '../step2/fixtures.js';

const config = testConfig('JBSWY3DPEHPK3PXP');
const vpn: AppConfig = { ...config.apps[0]!, protocol: 'udp' };
const ssh = config.apps[1]!;
const rdp: AppConfig = { ...ssh, name: 'rdp', port: 3389, destination: { kind: 'forward', address: '192.168.50.10', family: 4, port: 3389 } };

describe('conntrack arguments', () => {
  it('deletes flows by original source, protocol and original destination port, per family', () => {
    expect(conntrackDeleteArgs('192.0.2.7', { protocol: 'tcp', port: 22 })).toEqual([
      '--delete',
      '--family',
      'ipv4',
      '--orig-src',
      '192.0.2.7',
      '--proto',
      'tcp',
      '--orig-port-dst',
      '22',
    ]);
    expect(conntrackDeleteArgs('2001:db8::7', { protocol: 'udp', port: 1194 })).toEqual([
      '--delete',
      '--family',
      'ipv6',
      '--orig-src',
      '2001:db8::7',
      '--proto',
      'udp',
      '--orig-port-dst',
      '1194',
    ]);
  });

  it('refuses anything that is not an address (nothing reaches the tool)', () => {
    expect(() => conntrackDeleteArgs('192.0.2.7 --dump', { protocol: 'tcp', port: 22 })).toThrow(/not an IPv4 or IPv6 address/);
    expect(() => socketKillArgs('-K', 22)).toThrow(/not an IPv4 or IPv6 address/);
  });

  it('destroys local sockets whose peer is the address, IPv6 in brackets', () => {
    expect(socketKillArgs('192.0.2.7', 22)).toEqual(['--kill', '--no-header', '--tcp', '--numeric', 'dst', '192.0.2.7', 'sport', '=', ':22']);
    expect(socketKillArgs('2001:db8::7', 443)).toEqual(['--kill', '--no-header', '--tcp', '--numeric', 'dst', '[2001:db8::7]', 'sport', '=', ':443']);
  });
});

describe('revokedFlowTargets', () => {
  const scope = { step2Port: 443, apps: [vpn, ssh, rdp] };

  it('a service revoke covers the app public port and protocol only', () => {
    expect(revokedFlowTargets(scope, vpn)).toEqual([{ protocol: 'udp', port: 1194, local: true }]);
    // Forwarded: the original tuple keeps the public port; no local socket to destroy.
    expect(revokedFlowTargets(scope, rdp)).toEqual([{ protocol: 'tcp', port: 3389, local: false }]);
  });

  it('a full revoke adds the HTTPS port, each port once', () => {
    expect(revokedFlowTargets({ step2Port: 22, apps: [vpn, ssh, rdp] })).toEqual([
      { protocol: 'tcp', port: 22, local: true },
      { protocol: 'udp', port: 1194, local: true },
      { protocol: 'tcp', port: 3389, local: false },
    ]);
    expect(revokedFlowTargets(scope)).toHaveLength(4);
  });
});

/** A tool runner that answers from a script and records the calls. */
function scripted(answer: (command: string, args: string[]) => ToolResult | Error) {
  const calls: string[] = [];
  const run = async (command: string, args: string[]): Promise<ToolResult> => {
    calls.push(`${command} ${args.join(' ')}`);
    const result = answer(command, args);
    if (result instanceof Error) throw result;
    return result;
  };
  return { calls, run };
}

const deleted = (n: number): ToolResult => ({
  code: n === 0 ? 1 : 0,
  stdout: '',
  stderr: `conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been deleted.`,
});

describe('ConntrackFlowCloser', () => {
  it('kills local TCP sockets before deleting entries, and counts both', async () => {
    const tool = scripted((command) =>
      command === 'ss' ? { code: 0, stdout: 'ESTAB 0 0 [::ffff:192.0.2.1]:22 [::ffff:192.0.2.7]:40000\n', stderr: '' } : deleted(2),
    );
    const closer = new ConntrackFlowCloser(tool.run);
    expect(await closer.close('192.0.2.7', revokedFlowTargets({ step2Port: 443, apps: [] }, ssh))).toBe(3);
    expect(tool.calls).toEqual([
      'ss --kill --no-header --tcp --numeric dst 192.0.2.7 sport = :22',
      'conntrack --delete --family ipv4 --orig-src 192.0.2.7 --proto tcp --orig-port-dst 22',
    ]);
  });

  it('UDP and forwarded apps: conntrack only', async () => {
    const tool = scripted(() => deleted(1));
    const closer = new ConntrackFlowCloser(tool.run);
    expect(
      await closer.close('2001:db8::7', [...revokedFlowTargets({ step2Port: 443, apps: [] }, vpn), ...revokedFlowTargets({ step2Port: 443, apps: [] }, rdp)]),
    ).toBe(2);
    expect(tool.calls.every((c) => c.startsWith('conntrack '))).toBe(true);
  });

  it('nothing to delete (exit status 1, "0 flow entries") is not an error', async () => {
    const tool = scripted((command) => (command === 'ss' ? { code: 0, stdout: '', stderr: '' } : deleted(0)));
    expect(await new ConntrackFlowCloser(tool.run).close('192.0.2.7', revokedFlowTargets({ step2Port: 443, apps: [ssh] }))).toBe(0);
  });

  it('tries every port, then names each failure', async () => {
    const tool = scripted((command, args) => {
      if (command === 'ss') return { code: 0, stdout: '', stderr: 'SOCK_DESTROY answers: Operation not permitted' };
      if (args.includes('1194')) return new FlowCloseError("'conntrack' not found: install it (see packaging/debian-packages.txt)");
      return {
        code: 1,
        stdout: '',
        stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: sorry, you must be root or get CAP_NET_ADMIN capability to do this',
      };
    });
    const closing = new ConntrackFlowCloser(tool.run).close('192.0.2.7', revokedFlowTargets({ step2Port: 443, apps: [vpn, ssh] }));
    await expect(closing).rejects.toThrow(FlowCloseError);
    await expect(closing).rejects.toThrow(
      /established flows of 192\.0\.2\.7 may still be open: tcp\/443 sockets: SOCK_DESTROY answers: Operation not permitted; tcp\/443 conntrack: .*CAP_NET_ADMIN.*; udp\/1194 conntrack: 'conntrack' not found/,
    );
    expect(tool.calls).toHaveLength(5);
  });
});

describe('spawnTool', () => {
  it('runs the tool as a child process behind the prefix and keeps its exit status and stderr', async () => {
    // `sh -c SCRIPT sh conntrack ARGS...`: the script stands in for conntrack.
    const run = spawnTool(['sh', '-c', 'echo "$1 $2: 0 flow entries have been deleted." >&2; echo ignored; exit 1', 'sh']);
    expect(await run('conntrack', ['--delete'])).toEqual({ code: 1, stdout: '', stderr: 'conntrack --delete: 0 flow entries have been deleted.' });
    expect(await run('ss', ['--kill'])).toMatchObject({ code: 1, stdout: 'ignored\n' });
  });

  it('a missing tool is an error that says what to install', async () => {
    await expect(spawnTool(['/nonexistent/knock-port-tool'])('conntrack', [])).rejects.toThrow(/not found: install it/);
  });

  it('a tool that hangs is killed after the timeout', async () => {
    const result = await spawnTool(['sh', '-c', 'exec sleep 5', 'sh'], 200)('conntrack', []);
    expect(result.code).toBeNull();
    expect(result.stderr).toMatch(/killed after 0.2 s/);
  });
});
