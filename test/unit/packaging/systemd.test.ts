import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SetupExitCode } from '../../../src/shared/errors.js';

const UNIT_PATH = new URL('../../../packaging/systemd/knock-port.service', import.meta.url);
const SYSUSERS_PATH = new URL('../../../packaging/systemd/knock-port.sysusers', import.meta.url);
const unitText = readFileSync(UNIT_PATH, 'utf8');
const MAN_PAGES = fileURLToPath(new URL('../../../packaging/man/', import.meta.url));

const hasSystemdTools = spawnSync('systemd-analyze', ['--version']).status === 0 && spawnSync('systemd-sysusers', ['--version']).status === 0;
if (!hasSystemdTools) console.warn('SKIPPED systemd verification: systemd-analyze/systemd-sysusers not installed (apt-get install systemd)');

/** `[Section] Key=value` lines of the unit, in order (repeated keys kept). */
function directives(text: string): Array<{ section: string; key: string; value: string }> {
  let section = '';
  const result: Array<{ section: string; key: string; value: string }> = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1]!;
    else {
      const at = line.indexOf('=');
      result.push({ section, key: line.slice(0, at), value: line.slice(at + 1) });
    }
  }
  return result;
}

function serviceValue(key: string): string | undefined {
  return directives(unitText).find((d) => d.section === 'Service' && d.key === key)?.value;
}

describe('systemd unit', () => {
  it('does not restart after an exit a restart cannot mend (TLS files, capabilities, an unconfirmed trial)', () => {
    const noRestart = serviceValue('RestartPreventExitStatus')?.split(' ').map(Number).sort();
    expect(noRestart).toEqual(Object.values(SetupExitCode).sort());
  });

  it('runs the daemon as the dedicated user with only the network capabilities, after a config check', () => {
    expect(serviceValue('User')).toBe('knock-port');
    expect(serviceValue('AmbientCapabilities')?.split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW']);
    expect(serviceValue('CapabilityBoundingSet')).toBe(serviceValue('AmbientCapabilities'));
    expect(serviceValue('NoNewPrivileges')).toBe('yes');
    // The pre-start check reads the same certificate and key as run, so a bad pair fails before any rule.
    expect(serviceValue('ExecStartPre')).toBe(
      `/usr/bin/knock-port check -c /etc/knock-port/config.yaml${/ --cert \S+ --key \S+$/.exec(serviceValue('ExecStart')!)![0]}`,
    );
    expect(serviceValue('ExecStart')).toMatch(/^\/usr\/bin\/knock-port run -c \/etc\/knock-port\/config\.yaml --cert \S+ --key \S+$/);
    expect(serviceValue('Restart')).toBe('on-failure');
    expect(serviceValue('ProtectSystem')).toBe('strict');
    expect(serviceValue('StateDirectory')).toBe('knock-port');
    // The JIT needs writable executable memory: this setting would crash the daemon at start.
    expect(serviceValue('MemoryDenyWriteExecute')).toBeUndefined();
  });

  it('reloads the config with SIGHUP (systemctl reload) and keeps kernel tunables read-only', () => {
    expect(serviceValue('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    // The daemon writes no sysctl (only the demo does, in its own namespaces).
    expect(serviceValue('ProtectKernelTunables')).toBe('yes');
  });

  it('is a notify service with a watchdog: the daemon sends READY=1, RELOADING=1 and WATCHDOG=1 itself', () => {
    expect(serviceValue('Type')).toBe('notify');
    // Only the daemon's own messages count, not those of the nft/iptables commands it runs.
    expect(serviceValue('NotifyAccess')).toBe('main');
    // The daemon pings at half the interval (src/systemd/notify.ts); a missed deadline restarts it.
    expect(serviceValue('WatchdogSec')).toBe('30s');
    expect(serviceValue('Restart')).toBe('on-failure');
    // The notification socket is a unix socket.
    expect(serviceValue('RestrictAddressFamilies')?.split(' ')).toContain('AF_UNIX');
    expect(unitText).not.toMatch(/not notify|Type=simple/);
  });
});

describe.skipIf(!hasSystemdTools)('systemd tools accept the packaging files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'knock-systemd-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // verify also checks that every Exec path exists and is executable, and that `man` finds each
  // Documentation= page; knock-port is not installed here, so a copy points at the node binary
  // (what /usr/bin/knock-port runs) and MANPATH at the pages the package installs.
  const manDir = join(dir, 'man');
  for (const page of readdirSync(MAN_PAGES)) {
    mkdirSync(join(manDir, `man${page.split('.').at(-1)!}`), { recursive: true });
    copyFileSync(join(MAN_PAGES, page), join(manDir, `man${page.split('.').at(-1)!}`, page));
  }
  function verify(text: string): { status: number | null; stderr: string } {
    const path = join(dir, 'knock-port.service');
    writeFileSync(path, text.replaceAll('/usr/bin/knock-port', process.execPath));
    const result = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8', env: { ...process.env, MANPATH: manDir } });
    return { status: result.status, stderr: result.stderr };
  }

  it('points systemctl help to the man pages and the documentation the package installs', () => {
    const documentation = directives(unitText).filter((d) => d.section === 'Unit' && d.key === 'Documentation');
    expect(documentation.map((d) => d.value)).toEqual(['man:knock-port(8) man:knock-port.yaml(5) file:/usr/share/doc/knock-port/']);
    for (const page of ['knock-port.8', 'knock-port.yaml.5']) expect(existsSync(new URL(`../../../packaging/man/${page}`, import.meta.url))).toBe(true);
  });

  it('systemd-analyze verify reports nothing at all about the unit', () => {
    expect(verify(unitText)).toEqual({ status: 0, stderr: '' });
  });

  it('systemd-analyze verify does flag a mistake (it only warns, so the test checks stderr)', () => {
    expect(verify(unitText.replace('ProtectSystem=strict', 'ProtectSystem=stricter')).stderr).toContain('stricter');
  });

  it('systemd-sysusers creates a nologin knock-port user (in a scratch root)', () => {
    const root = join(dir, 'root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    const result = spawnSync('systemd-sysusers', [`--root=${root}`, new URL(SYSUSERS_PATH).pathname], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    const entry = readFileSync(join(root, 'etc/passwd'), 'utf8')
      .split('\n')
      .find((line) => line.startsWith('knock-port:'));
    expect(entry?.split(':').slice(4)).toEqual(['knock-port daemon', '/var/lib/knock-port', '/usr/sbin/nologin']);
    expect(readFileSync(join(root, 'etc/group'), 'utf8')).toMatch(/^knock-port:/m);
  });
});
