/**
 * The Debian package, end to end on this machine: `npm run package:deb`'s script builds it,
 * lintian accepts it, `dpkg -i` installs it, the installed unit verifies, the installed command
 * runs and refuses the example config, the installed daemon records what it installs, `dpkg -r`
 * removes those rules even when the config no longer passes `check`, and `dpkg -P` removes what
 * the package made but keeps the operator's TLS files and the knock-port user.
 *
 * Every dpkg command runs in a private network namespace (`unshare --net`, or the gateway
 * namespace the daemon ran in): the maintainer scripts (prerm runs `knock-port uninstall`) see
 * a private firewall, never this machine's.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingCommands } from '../../../src/demo/netns.js';
import { announceSkip, kernelSkipReason, Netns, requiredInCi, waitFor } from '../../helpers/netns.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PKG = 'knock-port';
const UNIT = '/usr/lib/systemd/system/knock-port.service';
const CONFIG = '/etc/knock-port/config.yaml';
/** Where the unit reads the certificate and key: the operator's files, which purge keeps. */
const TLS = { cert: '/etc/knock-port/tls/cert.pem', key: '/etc/knock-port/tls/key.pem' };
const STATE_DIR = '/var/lib/knock-port';
/** Building both packages (npm ci, two xz-compressed .debs) and linting them take minutes under load. */
const BUILD_MS = 300_000;
/** The gateway's external interface in the namespace the installed daemon runs in. */
const WAN = 'kpdebwan0';

function sh(command: string, args: string[], input?: string): SpawnSyncReturns<string> {
  return spawnSync(command, args, { encoding: 'utf8', timeout: 90_000, ...(input === undefined ? {} : { input }) });
}
const out = (r: SpawnSyncReturns<string>): string => `exit ${r.status}\n${r.stdout}\n${r.stderr}`;
/** dpkg in a private network namespace: its maintainer scripts cannot reach this host's firewall. */
const dpkg = (...args: string[]) => sh('unshare', ['--net', 'dpkg', ...args]);
const installed = () => sh('dpkg-query', ['-W', '-f=${Status}', PKG]).stdout.includes('installed');
const account = (db: 'passwd' | 'group') => sh('getent', [db, PKG]).status === 0;

/**
 * Never clobber a knock-port this machine already has: purge would remove its user and config.
 * CI's machine is fresh, so there a knock-port already present fails the test (requiredInCi).
 */
function alreadyThere(): string | undefined {
  if (sh('dpkg-query', ['-W', PKG]).status === 0) return `the ${PKG} package is already known to dpkg here (dpkg -P it first)`;
  for (const path of ['/usr/bin/knock-port', '/usr/lib/knock-port', '/etc/knock-port', '/var/lib/knock-port', '/run/knock-port']) {
    if (existsSync(path)) return `${path} already exists (a knock-port installed another way)`;
  }
  if (account('passwd') || account('group')) return 'a knock-port user or group already exists';
  return undefined;
}

const skip = announceSkip(
  'packaging/deb',
  kernelSkipReason(['dpkg', 'dpkg-deb', 'dpkg-shlibdeps', 'unshare', 'systemd-analyze', 'nft', 'npm', 'ip', 'openssl']) ?? requiredInCi(alreadyThere()),
);
const noLintian =
  !skip && requiredInCi(missingCommands(['lintian']).length > 0 ? 'lintian is not installed (apt-get install lintian)' : undefined) !== undefined;
if (noLintian) announceSkip('packaging/deb lintian', 'lintian is not installed (apt-get install lintian)');

describe.skipIf(skip)('the Debian package', () => {
  let outDir: string;
  let deb: string;
  /** knock-port-standalone: the same program with the build machine's Node.js. */
  let standalone: string;
  let files: string[] = [];
  let gw: Netns | undefined;

  beforeAll(() => {
    outDir = mkdtempSync(join(tmpdir(), 'knock-deb-'));
    const build = spawnSync(join(ROOT, 'packaging/deb/build.sh'), [], {
      encoding: 'utf8',
      // The packages' contents are under test, not how small xz makes them: level 1 spares the
      // minute xz's default level takes over the standalone package's Node.js.
      env: { ...process.env, KNOCK_PORT_DEB_OUT: outDir, DPKG_DEB_COMPRESSOR_LEVEL: '1' },
      timeout: BUILD_MS,
    });
    if (build.status !== 0) throw new Error(`package build failed:\n${out(build)}`);
    [standalone, deb] = build.stdout.trim().split('\n').slice(-2) as [string, string];
  }, BUILD_MS + 10_000);

  afterAll(() => {
    // Whatever failed: purge (in a private namespace), and leave no user, operator file or namespace behind.
    if (installed() || sh('dpkg-query', ['-W', PKG]).status === 0) dpkg('-P', PKG);
    gw?.destroy();
    for (const path of ['/etc/knock-port', '/var/lib/knock-port', '/run/knock-port']) rmSync(path, { recursive: true, force: true });
    if (account('passwd')) sh('userdel', [PKG]);
    if (account('group')) sh('groupdel', [PKG]);
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it('is named knock-port_<version>_<arch>.deb and depends on the runtime libraries, firewall tools and Node.js 20.17', () => {
    const arch = sh('dpkg', ['--print-architecture']).stdout.trim();
    expect(deb).toBe(join(outDir, `${PKG}_${VERSION}_${arch}.deb`));
    const depends = sh('dpkg-deb', ['-f', deb, 'Depends']).stdout;
    for (const dep of [
      'libnetfilter-queue1',
      'libnetfilter-log1',
      'libnftables1',
      'libmnl0',
      'nftables',
      'iptables',
      'ipset',
      'conntrack',
      'iproute2',
      'openssl',
      'procps',
      'nodejs (>= 20.17)',
    ]) {
      expect(depends).toContain(dep);
    }
    const contents = sh('dpkg-deb', ['-c', deb]).stdout;
    for (const path of [
      './usr/bin/knock-port',
      './usr/lib/knock-port/build/Release/knockport_native.node',
      './usr/lib/knock-port/dist/cli/main.js',
      './usr/lib/knock-port/node_modules/commander/',
      './usr/lib/systemd/system/knock-port.service',
      './usr/lib/sysusers.d/knock-port.conf',
      './usr/lib/tmpfiles.d/knock-port.conf',
      './etc/knock-port/config.yaml',
      './usr/share/doc/knock-port/copyright',
      './usr/share/doc/knock-port/changelog.gz',
      './usr/share/doc/knock-port/README.md.gz',
      './usr/share/doc/knock-port/manual/configuration.md.gz',
      './usr/share/doc/knock-port/examples/config.example.yaml',
      './usr/share/doc/knock-port/examples/fail2ban/filter.d/knock-port.conf',
      './usr/share/man/man8/knock-port.8.gz',
      './usr/share/man/man5/knock-port.yaml.5.gz',
      './usr/share/man/man1/knock-port-knock.1.gz',
      './usr/share/bash-completion/completions/knock-port',
      './usr/share/zsh/vendor-completions/_knock-port',
    ]) {
      expect(contents).toContain(` ${path}\n`);
    }
    // Build-only dependencies and TypeScript sources stay out.
    expect(contents).not.toMatch(/node_modules\/(node-gyp|node-addon-api|typescript|vitest)\//);
    expect(contents).not.toMatch(/\.ts\n/); // no TypeScript (ours compiled, the modules' sources pruned)
    expect(readConffiles(deb)).toBe(`${CONFIG}\n`);
  });

  it.skipIf(noLintian)('lintian reports no error or warning on either package (overrides are explained in the package)', () => {
    const lintian = spawnSync('lintian', ['--fail-on', 'error,warning', deb, standalone], { encoding: 'utf8', timeout: BUILD_MS });
    expect(lintian.status, out(lintian)).toBe(0);
    expect(lintian.stdout).not.toMatch(/^[EW]: /m);
  });

  it('the standalone package carries the Node.js runtime with its license, needs no nodejs, and runs on it', () => {
    const arch = sh('dpkg', ['--print-architecture']).stdout.trim();
    expect(standalone).toBe(join(outDir, `${PKG}-standalone_${VERSION}_${arch}.deb`));
    expect(sh('dpkg-deb', ['-f', standalone, 'Depends']).stdout).not.toContain('nodejs');
    expect(sh('dpkg-deb', ['-f', standalone, 'Provides']).stdout.trim()).toBe(`${PKG} (= ${VERSION})`);
    const contents = sh('dpkg-deb', ['-c', standalone]).stdout;
    expect(contents).toMatch(/^-rwxr-xr-x .* \.\/usr\/lib\/knock-port\/node\/bin\/node$/m);
    expect(contents).toMatch(/^-rw-r--r-- .* \.\/usr\/lib\/knock-port\/node\/LICENSE$/m);
    // The same unit, user and state directory as knock-port, under the same names.
    for (const path of ['./usr/lib/systemd/system/knock-port.service', './usr/lib/sysusers.d/knock-port.conf', './usr/lib/tmpfiles.d/knock-port.conf']) {
      expect(contents).toContain(` ${path}\n`);
    }
    const unpacked = join(outDir, 'standalone');
    expect(sh('dpkg-deb', ['-x', standalone, unpacked]).status).toBe(0);
    const lib = join(unpacked, 'usr/lib/knock-port');
    expect(readFileSync(join(unpacked, 'usr/bin/knock-port'), 'utf8')).toContain(
      'exec /usr/lib/knock-port/node/bin/node /usr/lib/knock-port/bin/knock-port.js',
    );
    expect(readFileSync(join(lib, 'node/LICENSE'), 'utf8')).toMatch(/Node\.js is licensed for use as follows/);
    const version = sh(join(lib, 'node/bin/node'), [join(lib, 'bin/knock-port.js'), '--version']);
    expect(version.stdout.trim(), out(version)).toBe(VERSION);
  });

  it('installs with dpkg -i: user, config readable by its group only, unit that verifies', () => {
    const install = dpkg('-i', deb);
    expect(install.status, out(install)).toBe(0);
    files = sh('dpkg', ['-L', PKG])
      .stdout.split('\n')
      .filter((line) => line.startsWith('/') && line !== '/.');
    expect(files).toContain('/usr/bin/knock-port');
    expect(sh('getent', ['passwd', PKG]).stdout.split(':').slice(5)).toEqual(['/var/lib/knock-port', '/usr/sbin/nologin\n']);
    const group = sh('getent', ['group', PKG]).stdout.split(':')[2];
    for (const [path, mode] of [
      ['/etc/knock-port', 0o750],
      [CONFIG, 0o640],
    ] as const) {
      const st = statSync(path);
      expect({ path, mode: st.mode & 0o777, uid: st.uid, gid: st.gid }).toEqual({ path, mode, uid: 0, gid: Number(group) });
    }
    expect(existsSync('/var/lib/knock-port')).toBe(true);
    const verify = sh('systemd-analyze', ['verify', UNIT]);
    expect({ status: verify.status, stderr: verify.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('runs from /usr/bin: --version, and check refuses the installed example config', () => {
    const version = sh('/usr/bin/knock-port', ['--version']);
    expect(version.stdout.trim(), out(version)).toBe(VERSION);
    const check = sh('/usr/bin/knock-port', ['check', '-c', CONFIG]);
    expect(check.status, out(check)).not.toBe(0);
    expect(check.stderr).toContain(`invalid config ${CONFIG}`);
    expect(check.stderr).toMatch(/http_post_path: '\/' alone is not a secret path/);
    expect(check.stderr).toMatch(/access_key_http\S*: a key needs at least/);
  });

  it('the installed daemon records what it installs; dpkg -r removes it though the config no longer passes check', async () => {
    expect(files.length).toBeGreaterThan(0);
    gw = Netns.create('deb');
    gw.ip('link', 'add', WAN, 'type', 'veth', 'peer', 'name', `${WAN}p`);
    gw.ip('link', 'set', WAN, 'up');
    // As the unit would have them: the operator's config and TLS files, the runtime directory.
    writeFileSync(CONFIG, VALID_CONFIG);
    mkdirSync('/etc/knock-port/tls');
    const tls = sh('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=gw',
      '-keyout',
      TLS.key,
      '-out',
      TLS.cert,
    ]);
    expect(tls.status, out(tls)).toBe(0);
    mkdirSync('/run/knock-port', { mode: 0o750 });

    const output: string[] = [];
    const daemon = gw.spawn('/usr/bin/knock-port', ['run', '-c', CONFIG, '--cert', TLS.cert, '--key', TLS.key]);
    daemon.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    daemon.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    try {
      expect(await waitFor(() => output.join('').includes('knock-port ready') || daemon.exitCode !== null, 30_000, 200), output.join('')).toBe(true);
      expect(output.join('')).toContain('knock-port ready');
    } finally {
      daemon.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    // Stopped, the daemon leaves its rules (fail closed), and the record of them.
    expect(gw.exec('nft', ['list', 'tables'])).toContain('table inet knockport');
    expect(JSON.parse(readFileSync(join(STATE_DIR, 'firewall-installs.json'), 'utf8'))).toEqual({
      version: 1,
      installs: [{ firewallType: 'nftables', tableName: 'knockport', iptablesVariant: 'default', controlSocket: '/run/knock-port/control.sock' }],
    });

    // The operator edits the config into one that no longer loads; the rules must still go.
    writeFileSync(CONFIG, VALID_CONFIG.replace(`interface_ext: ${WAN}`, 'interface_ext: [broken'));
    expect(sh('/usr/bin/knock-port', ['check', '-c', CONFIG]).status).not.toBe(0);
    const remove = sh('ip', ['netns', 'exec', gw.name, 'dpkg', '-r', PKG]);
    expect(remove.status, out(remove)).toBe(0);
    expect(remove.stdout + remove.stderr).toContain("removed knock-port's nftables rules and sets of table knockport");
    expect(gw.exec('nft', ['list', 'tables'])).not.toContain('knockport');
    expect(existsSync(join(STATE_DIR, 'firewall-installs.json'))).toBe(false);
    expect(existsSync('/usr/bin/knock-port')).toBe(false);
    expect(existsSync(CONFIG)).toBe(true); // a conffile: kept until purge
  });

  it("dpkg -P removes what the package made, and keeps the operator's TLS files and the knock-port user", () => {
    const pems = { cert: readFileSync(TLS.cert, 'utf8'), key: readFileSync(TLS.key, 'utf8') };
    const purge = dpkg('-P', PKG);
    expect(purge.status, out(purge)).toBe(0);
    expect(sh('dpkg-query', ['-W', PKG]).status).not.toBe(0);
    for (const path of [CONFIG, STATE_DIR, '/run/knock-port', '/usr/lib/knock-port', '/etc/systemd/system/multi-user.target.wants/knock-port.service']) {
      expect(existsSync(path), path).toBe(false);
    }
    expect({ cert: readFileSync(TLS.cert, 'utf8'), key: readFileSync(TLS.key, 'utf8') }).toEqual(pems);
    expect(account('passwd')).toBe(true);
    expect(account('group')).toBe(true);
    // Every file the package had is gone; a directory may stay only when another package owns it,
    // or when it holds the operator's own files (/etc/knock-port).
    const left = files.filter((path) => pathExists(path));
    const leftFiles = left.filter((path) => !lstatSync(path).isDirectory());
    expect(leftFiles).toEqual([]);
    const unowned = left.filter((dir) => dir !== '/etc/knock-port' && sh('dpkg-query', ['-S', dir]).status !== 0);
    expect(unowned).toEqual([]);
  });
});

function pathExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function readConffiles(deb: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'knock-deb-ctl-'));
  try {
    sh('dpkg-deb', ['-e', deb, dir]);
    return readFileSync(join(dir, 'conffiles'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const VALID_CONFIG = `global:
  http_post_path: /deb-test-5f0c2a9e71d34b86
  https_post_path: /deb-test-b41e93d07c6a2f58
  interface_ext: ${WAN}
ssh:
  port: 22
  duration: 60
  step2_https_duration: 5
  access_key_http: [deb-test-http-3c8e1f6a0b9d]
  access_key_https: [deb-test-https-7a2d5e9c1f4b]
`;
