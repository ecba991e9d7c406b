#!/usr/bin/env node
/**
 * Install test (`npm run test:install`): the Debian packages installed with apt on clean Debian
 * systems, booted with systemd under Debian's own kernels, and checked as an operator would.
 *
 * For each system: `mmdebstrap` builds a minimal root from Debian's archive (minbase, systemd as
 * init, kmod, nftables, iproute2, curl; no recommends, no docs), the package is copied in and apt
 * downloads what it depends on into the root's cache (inside, apt then installs offline), the
 * root becomes an ext4 image (`mkfs.ext4 -d`, no loop mount), and qemu (TCG, no KVM) boots it
 * from a virtio disk with the stock kernel's modules shared read-only over 9p. Inside,
 * test/install/guest/checks.sh runs once the boot is done: `apt install ./PKG.deb`,
 * `knock-port init`, `systemctl enable --now`, a curl knock from a client namespace, `user add`
 * and `systemctl reload`, `apt remove` (no rule left), `apt purge` (the TLS files stay).
 *
 *   Debian 12 (bookworm), kernel 6.1:  knock-port-standalone (its own Node.js)
 *   Debian 13 (trixie), kernel 6.12:   knock-port (on the distribution's nodejs)
 *
 * The package build and both roots run at once, then both VMs. Never skips: a missing tool (the
 * message names the package), a failed download, a failed stage or a timeout is a failure.
 *
 * Environment: KNOCKPORT_INSTALL_SYSTEMS (suites to test, comma-separated; default
 * `bookworm,trixie`), KNOCKPORT_INSTALL_DEBS (a directory holding both packages already built by
 * `npm run package:deb`: no build), KNOCKPORT_INSTALL_CPUS (virtual CPUs per VM, default 1),
 * KNOCKPORT_INSTALL_TIMEOUT_MINUTES (per VM, default 15), KNOCKPORT_TIME_SCALE (slowdown the
 * checks allow for, default 3), KNOCKPORT_INSTALL_WORKDIR (where roots and images go; default
 * /dev/shm, else the temporary directory), KNOCKPORT_INSTALL_KEEP=1 (keep them, and print where).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { buildInitramfs, fail, findKernel, initPrologue, KERNELS, NINEP_OPTIONS, ninepShare, runQemu, VmFailure, which } from '../vm/kernels.mjs';

const REPO = resolve(import.meta.dirname, '../..');
const GUEST = join(import.meta.dirname, 'guest');
const VERSION = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version;
/** Each system, the kernel it boots and the package made for it (packaging/deb/README.md). */
const SYSTEMS = [
  { suite: 'bookworm', name: 'Debian 12', kernel: '6.1', pkg: 'knock-port-standalone' },
  { suite: 'trixie', name: 'Debian 13', kernel: '6.12', pkg: 'knock-port' },
];
/**
 * What the root has besides minbase (essential + apt): what a small server runs (systemd as init,
 * kmod for the kernel's module loads, nftables, iproute2) and curl for the client. The package's
 * own dependencies (iptables, ipset, the netfilter libraries, nodejs) are apt's to pull in.
 */
const INCLUDE = ['systemd', 'systemd-sysv', 'kmod', 'nftables', 'iproute2', 'curl'];
/** Nothing the test reads: less to unpack, on the host and in the VM (dpkg keeps the excludes). */
const DPKG_EXCLUDES = ['/usr/share/man/*', '/usr/share/doc/*', '/usr/share/locale/*', '/usr/share/info/*'];
/** The initramfs mounts the ext4 root from the virtio disk and the 9p shares (crc32c: ext4's checksums). */
const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4', '9pnet_virtio', '9p'];
/** The daemon's needs that the kernel loads on demand (nftables + NFQUEUE, what `capture: auto` picks here). */
const DAEMON_MODULES = ['nf_tables', 'nft_queue', 'nfnetlink_queue', 'veth'];
/** Free space in the image for what apt installs (the standalone package's Node.js, Debian 13's nodejs). */
const IMAGE_HEADROOM = 1024 << 20;
const CPUS = Number(process.env.KNOCKPORT_INSTALL_CPUS ?? '1');
const LIMIT_MINUTES = Number(process.env.KNOCKPORT_INSTALL_TIMEOUT_MINUTES ?? '15');
const TIME_SCALE = process.env.KNOCKPORT_TIME_SCALE ?? '3';
const KEEP = process.env.KNOCKPORT_INSTALL_KEEP === '1';
/** A host stage that runs longer than this has hung (mmdebstrap on a slow mirror takes a few minutes). */
const STAGE_LIMIT_MS = 20 * 60_000;
const TIER = 'test:install';

const log = (text) => process.stdout.write(`${TIER}: ${text}\n`);
const seconds = (since) => ((Date.now() - since) / 1000).toFixed(1);

/** Runs a command to completion, its output in `logFile`; fails with the log's end and `hint` unless it exits 0. */
function run(command, args, { logFile, env, hint = '' }) {
  return new Promise((done, reject) => {
    const out = createWriteStream(logFile);
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      out.write(chunk);
    });
    child.stderr.pipe(out, { end: false });
    const timer = setTimeout(() => child.kill('SIGKILL'), STAGE_LIMIT_MS);
    child.once('error', (err) => reject(new VmFailure(`${command}: ${err.message}`)));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      out.end(() => {
        if (code === 0) return done(stdout);
        const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-25).join('\n');
        const why = signal ? `was killed (${signal}${signal === 'SIGKILL' ? `, over ${STAGE_LIMIT_MS / 60_000} min` : ''})` : `exited with ${code}`;
        reject(new VmFailure(`${command} ${args.join(' ')} ${why}${hint}; the end of ${logFile}:\n${tail}`));
      });
    });
  });
}

/** Both packages, built by `npm run package:deb`'s script as test/kernel/packaging/deb.test.ts builds them, or taken from KNOCKPORT_INSTALL_DEBS. */
async function packages(work, timings) {
  const given = process.env.KNOCKPORT_INSTALL_DEBS;
  const named = (dir) => ({
    'knock-port-standalone': join(dir, `knock-port-standalone_${VERSION}_amd64.deb`),
    'knock-port': join(dir, `knock-port_${VERSION}_amd64.deb`),
  });
  if (given) {
    const debs = named(resolve(given));
    for (const path of Object.values(debs)) if (!existsSync(path)) fail(`KNOCKPORT_INSTALL_DEBS: no ${path} (npm run package:deb makes it)`);
    return debs;
  }
  const started = Date.now();
  const out = join(work, 'debs');
  // Uncompressed: the contents are under test, not xz, whose decompression would take the VM
  // (emulated) far longer than the copy of the larger file takes here.
  await run(join(REPO, 'packaging/deb/build.sh'), [], {
    logFile: join(work, 'package-build.log'),
    env: { KNOCK_PORT_DEB_OUT: out, DPKG_DEB_COMPRESSOR_TYPE: 'none' },
  });
  timings.push({ system: 'both', stage: 'build the packages (packaging/deb/build.sh)', seconds: seconds(started) });
  return named(out);
}

/** A clean root of `suite` from Debian's archive, with apt's lists kept (apt installs offline in the VM). */
async function buildRoot(system, dir) {
  await run(
    'mmdebstrap',
    [
      '--variant=minbase',
      `--include=${INCLUDE.join(',')}`,
      '--aptopt=APT::Install-Recommends "false"',
      ...DPKG_EXCLUDES.map((path) => `--dpkgopt=path-exclude=${path}`),
      '--skip=cleanup/apt/lists',
      system.suite,
      join(dir, 'root'),
    ],
    { logFile: join(dir, 'mmdebstrap.log'), hint: ' (is deb.debian.org reachable?)' },
  );
}

/** The package in /root, what it depends on in apt's cache (downloaded here: the VM has no network). */
async function addPackage(root, deb, dir) {
  copyFileSync(deb, join(root, 'root', basename(deb)));
  await run('chroot', [root, 'apt-get', 'install', '--download-only', '-y', `/root/${basename(deb)}`], {
    logFile: join(dir, 'apt-download.log'),
    hint: ' (is deb.debian.org reachable?)',
  });
}

/** The check service and the protected service, enabled; the mount points the initramfs uses. */
function addGuestUnits(root, kernel) {
  const units = join(root, 'etc/systemd/system');
  for (const unit of ['kp-install-test.service', 'kp-echo.socket', 'kp-echo@.service']) copyFileSync(join(GUEST, unit), join(units, unit));
  for (const [target, unit] of [
    ['multi-user.target.wants', 'kp-install-test.service'],
    ['sockets.target.wants', 'kp-echo.socket'],
  ]) {
    mkdirSync(join(units, target), { recursive: true });
    symlinkSync(`../${unit}`, join(units, target, unit));
  }
  mkdirSync(join(root, 'mnt/kp-io'), { recursive: true });
  mkdirSync(join(root, 'usr/lib/modules', kernel.version), { recursive: true });
}

/** An ext4 image of the root, built from the directory (`mkfs.ext4 -d`: no loop mount). */
async function buildImage(root, dir) {
  const used = Number((await run('du', ['-sb', root], { logFile: join(dir, 'du.log') })).split('\t')[0]);
  const image = join(dir, 'root.img');
  writeFileSync(image, '');
  truncateSync(image, Math.ceil((used * 1.2 + IMAGE_HEADROOM) / (1 << 20)) << 20);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'kp-install', '-d', root, image], { logFile: join(dir, 'mkfs.log') });
  return image;
}

function initScript(moduleFiles) {
  return `${initPrologue(moduleFiles, TIER)}
# The root from the virtio disk, the kernel's modules and the runner's share over 9p, then systemd.
mount -t ext4 /dev/vda /newroot || die "mount /dev/vda"
mount -t 9p -o ${NINEP_OPTIONS},ro modules /newroot/usr/lib/modules/$(uname -r) || die "mount the modules"
mount -t 9p -o ${NINEP_OPTIONS} vmio /newroot/mnt/kp-io || die "mount the runner's share"
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /sbin/init
`;
}

function qemuArgs(kernel, initrd, image, io) {
  // Quiet boot, but systemd's errors on the console; no login prompt on it.
  const append = 'console=ttyS0 quiet panic=-1 no_timer_check systemd.show_status=error systemd.mask=serial-getty@ttyS0.service';
  return [
    ...['-accel', 'tcg', '-cpu', 'max', '-m', '2048', '-smp', String(CPUS), '-nographic', '-no-reboot', '-nic', 'none'],
    ...['-kernel', kernel.image, '-initrd', initrd, '-append', append],
    // cache=unsafe: the image is thrown away after the run, so fsync need not reach the host's disk.
    ...['-drive', `file=${image},format=raw,if=virtio,cache=unsafe`],
    ...ninepShare('modules', `/lib/modules/${kernel.version}`, 'modules', ',readonly=on'),
    ...ninepShare('io', io, 'vmio'),
  ];
}

/** Boots the image and lets checks.sh run; the results and stage times it left in the share. */
async function boot(system, kernel, image, dir, { qemu, signals }) {
  const io = join(dir, 'io');
  mkdirSync(io);
  copyFileSync(join(GUEST, 'checks.sh'), join(io, 'checks.sh'));
  const deb = `${system.pkg}_${VERSION}_amd64.deb`;
  writeFileSync(join(io, 'env'), `PKG=${system.pkg}\nDEB=${deb}\nVERSION=${VERSION}\nSCALE=${TIME_SCALE}\n`);
  const initrd = buildInitramfs(kernel, dir, INITRAMFS_MODULES, initScript);
  const started = Date.now();
  let poweringOff = 0;
  const stopped = await runQemu({
    qemu,
    args: qemuArgs(kernel, initrd, image, io),
    label: system.suite,
    limitMinutes: LIMIT_MINUTES,
    signals,
    tier: TIER,
    onLine: (line) => {
      if (line.includes('install: powering off')) poweringOff = Date.now();
    },
  });
  const results = existsSync(join(io, 'results')) ? readFileSync(join(io, 'results'), 'utf8') : '';
  const code = existsSync(join(io, 'exit-code')) ? readFileSync(join(io, 'exit-code'), 'utf8').trim() : '';
  const stages = [...results.matchAll(/^stage (.+): ([\d.]+) s$/gm)].map(([, stage, s]) => ({ stage: `in the VM: ${stage}`, seconds: s }));
  if (poweringOff) stages.push({ stage: 'in the VM: power off until qemu exits', seconds: seconds(poweringOff) });
  stages.push({ stage: 'VM in all (qemu start to exit)', seconds: seconds(started) });
  const count = (re) => (results.match(re) ?? []).length;
  const failure = stopped
    ? `${stopped}, qemu killed`
    : code === ''
      ? 'the VM stopped without reporting an exit code (see its console above)'
      : code !== '0'
        ? 'a check failed inside the VM'
        : undefined;
  return { stages, passed: count(/^ok - /gm), failed: count(/^not ok - /gm), failure };
}

/** One system from root to verdict; never throws (a failed stage is the system's failure). */
async function testSystem(system, kernel, debsPromise, work, options) {
  const dir = join(work, system.suite);
  const root = join(dir, 'root');
  mkdirSync(dir);
  const timings = [];
  const timed = async (stage, step) => {
    const started = Date.now();
    const value = await step();
    timings.push({ stage, seconds: seconds(started) });
    return value;
  };
  try {
    await timed(`mmdebstrap ${system.suite}`, () => buildRoot(system, dir));
    const deb = (await debsPromise)[system.pkg];
    await timed("the package copied in, apt's download of its dependencies", () => addPackage(root, deb, dir));
    addGuestUnits(root, kernel);
    const image = await timed('ext4 image (mkfs.ext4 -d)', () => buildImage(root, dir));
    if (!KEEP) rmSync(root, { recursive: true, force: true });
    log(`[${system.suite}] booting ${kernel.image} from ${image}, ${CPUS} CPU(s), time scale ${TIME_SCALE}, limit ${LIMIT_MINUTES} min`);
    const outcome = await boot(system, kernel, image, dir, options);
    return { system, kernel, ...outcome, stages: [...timings, ...outcome.stages] };
  } catch (err) {
    const failure = err instanceof VmFailure ? err.message : String(err?.stack ?? err);
    return { system, kernel, stages: timings, passed: 0, failed: 0, failure };
  }
}

function selectedSystems() {
  const wanted = process.env.KNOCKPORT_INSTALL_SYSTEMS?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!wanted) return SYSTEMS;
  const unknown = wanted.filter((suite) => !SYSTEMS.some((s) => s.suite === suite));
  if (unknown.length > 0) fail(`KNOCKPORT_INSTALL_SYSTEMS names ${unknown.join(', ')}; this test knows ${SYSTEMS.map((s) => s.suite).join(', ')}`);
  return SYSTEMS.filter((s) => wanted.includes(s.suite));
}

function preflight() {
  if (process.getuid?.() !== 0) fail('needs root (mmdebstrap builds the roots as root; qemu shares the modules with passthrough permissions)');
  const tools = [
    ['mmdebstrap', 'mmdebstrap'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['chroot', 'coreutils'],
    ['dpkg-buildpackage', 'dpkg-dev'],
  ];
  const missing = tools.filter(([cmd]) => !which(cmd)).map(([cmd, pkg]) => `${cmd} (apt-get install ${pkg})`);
  if (missing.length > 0) fail(`missing: ${missing.join(', ')}; see packaging/debian-test-packages.txt`);
}

async function main() {
  preflight();
  const systems = selectedSystems();
  const kernels = systems.map((s) =>
    findKernel(
      KERNELS.find((k) => k.series === s.kernel),
      [...INITRAMFS_MODULES, ...DAEMON_MODULES],
      'an ext4 root on a virtio disk, 9p and nft_queue',
    ),
  );
  const missing = kernels.filter((k) => k.missing).map((k) => k.missing);
  if (missing.length > 0) fail(missing.join('\n'));
  const qemu = which('qemu-system-x86_64');

  const base = process.env.KNOCKPORT_INSTALL_WORKDIR ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
  const work = mkdtempSync(join(base, 'kp-install-'));
  const signals = new Set();
  const onSignal = (signal) => signals.forEach((stop) => stop(signal));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const started = Date.now();
  log(`${systems.map((s, i) => `${s.name} (${s.suite}, ${s.pkg}, kernel ${kernels[i].version})`).join(' and ')} at once, in ${work}`);
  try {
    const buildTimings = [];
    const debs = packages(work, buildTimings);
    debs.catch(() => {}); // each system reports the failure
    const outcomes = await Promise.all(systems.map((system, i) => testSystem(system, kernels[i], debs, work, { qemu, signals })));
    report(outcomes, buildTimings, started);
  } finally {
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

function report(outcomes, buildTimings, started) {
  process.stdout.write(`\n${TIER} results:\n`);
  for (const { stage, seconds: s } of buildTimings) process.stdout.write(`  ${s.padStart(6)} s  ${stage}\n`);
  for (const { system, kernel, stages, passed, failed, failure } of outcomes) {
    process.stdout.write(`[${system.suite}] ${system.name}, ${system.pkg}, kernel ${kernel.version}: ${passed} checks passed, ${failed} failed\n`);
    for (const { stage, seconds: s } of stages) process.stdout.write(`  ${s.padStart(6)} s  ${stage}\n`);
    process.stdout.write(`[${system.suite}] ${failure ? `FAILED: ${failure}` : 'passed'}\n`);
  }
  const total = (key) => outcomes.reduce((sum, o) => sum + o[key], 0);
  const failedSystems = outcomes.filter((o) => o.failure);
  log(`${outcomes.length} systems in ${((Date.now() - started) / 60_000).toFixed(1)} min`);
  process.stdout.write(`install: ${total('passed')} passed, ${total('failed') + failedSystems.filter((o) => o.failed === 0).length} failed\n`);
  if (failedSystems.length > 0) fail(failedSystems.map((o) => `${o.system.suite}: ${o.failure.split('\n')[0]}`).join('; '));
}

try {
  await main();
} catch (err) {
  process.stderr.write(`\n${TIER} FAILED: ${err instanceof VmFailure ? err.message : (err?.stack ?? err)}\n`);
  process.exitCode = 1;
}
