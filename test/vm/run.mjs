#!/usr/bin/env node
/**
 * Stock-kernel test tier (`npm run test:vm [-- FILE...]`): boots Debian's distribution kernels
 * (6.1 and 6.12) under qemu (no KVM) with the host's `/` shared read-only over virtio-9p, and
 * runs kernel tests inside each with vitest. The host kernel lacks the nft `queue` expression,
 * so this is where nftables + NFQUEUE (what `capture: auto` picks on Debian and Ubuntu) is
 * tested, and where behaviour that depends on the kernel's version (table flags owner, persist:
 * 6.9+) is proven on both sides.
 *
 * Never skips: a missing kernel (the message names its package), no qemu, a timeout or a
 * missing exit code is a failure. The recipe (modules, mounts, pitfalls) is in the project's
 * stock-kernel VM reference.
 *
 * Environment: KNOCKPORT_VM_KERNELS (series to boot, comma-separated; default `6.1,6.12`),
 * KNOCKPORT_VM_PARALLEL (`1`: the kernels at once; `0`: one after another; default 1),
 * KNOCKPORT_VM_CPUS (virtual CPUs per VM, default 2), KNOCKPORT_VM_TIMEOUT_MINUTES (per kernel, default 40),
 * KNOCKPORT_TIME_SCALE (default 5), KNOCKPORT_VM_COMMAND (a shell command to run instead of
 * vitest, for debugging the VM itself).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { vmTestsFor } from './tests.mjs';

const REPO = resolve(import.meta.dirname, '../..');
/** Slowdown the tests allow for (see test/helpers/vm.ts): measured 3-8x here with the cached 9p root. */
const TIME_SCALE = process.env.KNOCKPORT_TIME_SCALE ?? '5';
const LIMIT_MINUTES = Number(process.env.KNOCKPORT_VM_TIMEOUT_MINUTES ?? '40');
/**
 * The stock kernels this tier boots, each from Debian's packages (packaging/debian-test-packages.txt):
 * Debian 12's 6.1 (no table flag persist: the fallback) and the 6.12 series Debian 13 runs.
 */
const KERNELS = [
  { series: '6.1', pkg: 'linux-image-amd64' },
  { series: '6.12', pkg: 'linux-image-6.12-amd64' },
];
/** Measured on 2 cores: both kernels at once finish sooner than one after the other (docs/testing.md). */
const PARALLEL = (process.env.KNOCKPORT_VM_PARALLEL ?? '1') !== '0';
/** Two, even when both VMs share two cores: the fanout test spreads step 1 over two CPUs (emulated CPUs are threads). */
const CPUS = Number(process.env.KNOCKPORT_VM_CPUS ?? '2');
/**
 * The 9p root's modules, loaded with their dependencies (from modules.dep) by the initramfs; the
 * rest of the kernel's modules load from the shared /lib/modules. Dependencies differ between
 * kernels (6.12 folds fscache into netfs and builds virtio in), so only the roots are named.
 */
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];
/** Directories the tests, the daemon and its tools write to; tmpfs over the read-only root. */
const WRITABLE = ['/tmp', '/run', '/var/lib', '/var/tmp', '/var/log', '/etc/knock-port'];
/** Where the writable share (job script, results, exit code) appears inside the VM. */
const VM_IO = '/tmp/kp-vm-io';

class VmFailure extends Error {}

function fail(message) {
  throw new VmFailure(message);
}

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || undefined;
}

/** The kernels to boot: every series in KERNELS, or those KNOCKPORT_VM_KERNELS names. */
function selectedKernels() {
  const wanted = process.env.KNOCKPORT_VM_KERNELS?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!wanted) return KERNELS;
  const unknown = wanted.filter((series) => !KERNELS.some((k) => k.series === series));
  if (unknown.length > 0) fail(`KNOCKPORT_VM_KERNELS names ${unknown.join(', ')}; this tier boots ${KERNELS.map((k) => k.series).join(', ')}`);
  return KERNELS.filter((k) => wanted.includes(k.series));
}

/** The newest /boot/vmlinuz-<series>.* whose /lib/modules has nft_queue and a 9p root (the -cloud flavour has no 9p), or why none. */
function findKernel({ series, pkg }) {
  const candidates = readdirSync('/boot')
    .filter((f) => f.startsWith(`vmlinuz-${series}.`))
    .map((f) => f.slice('vmlinuz-'.length))
    .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  const rejected = [];
  for (const version of candidates) {
    const depFile = `/lib/modules/${version}/modules.dep`;
    if (!existsSync(depFile)) {
      rejected.push(`${version}: no ${depFile}`);
      continue;
    }
    const modules = modulePaths(version);
    const missing = ['nft_queue', 'nfnetlink_queue', ...INITRAMFS_MODULES].filter((m) => !modules.has(m) && !isBuiltin(version, m));
    if (missing.length === 0) return { series, version, image: `/boot/vmlinuz-${version}`, modules };
    rejected.push(`${version}: no module ${missing.join(', ')}`);
  }
  return {
    series,
    missing:
      `no Debian ${series} kernel in /boot can run this tier (it needs nft_queue and a virtio-9p root)` +
      `${rejected.length > 0 ? ` (${rejected.join('; ')})` : ''}: install it with apt-get install ${pkg} (the standard flavour, not -cloud; see packaging/debian-test-packages.txt)`,
  };
}

/** Module name (dashes as underscores) -> { path under /lib/modules/<ver>, names it depends on }, from modules.dep. */
function modulePaths(version) {
  const map = new Map();
  const nameOf = (path) => /([^/]+)\.ko(\.\w+)?$/.exec(path)?.[1]?.replaceAll('-', '_');
  for (const line of readFileSync(`/lib/modules/${version}/modules.dep`, 'utf8').split('\n')) {
    const [path = '', deps = ''] = line.split(':');
    const name = nameOf(path);
    if (name) map.set(name, { path: join(`/lib/modules/${version}`, path), deps: deps.trim().split(/\s+/).filter(Boolean).map(nameOf) });
  }
  return map;
}

/** The initramfs modules with their dependencies first (the order differs between kernel builds). */
function loadOrder(modules) {
  const order = [];
  const visit = (name) => {
    const mod = modules.get(name);
    if (!mod || order.includes(name)) return; // built in, or already placed
    mod.deps.forEach(visit);
    order.push(name);
  };
  INITRAMFS_MODULES.forEach(visit);
  return order;
}

function isBuiltin(version, name) {
  const file = `/lib/modules/${version}/modules.builtin`;
  return (
    existsSync(file) &&
    readFileSync(file, 'utf8')
      .split('\n')
      .some((p) => p.endsWith(`/${name}.ko`))
  );
}

/** A module file's bytes, decompressed: the initramfs has no xz/zstd-aware insmod. */
function moduleBytes(path) {
  const tool = path.endsWith('.xz') ? ['xz', '-dc'] : path.endsWith('.zst') ? ['zstd', '-dc'] : path.endsWith('.gz') ? ['gzip', '-dc'] : undefined;
  if (!tool) return readFileSync(path);
  const r = spawnSync(tool[0], [...tool.slice(1), path], { maxBuffer: 256 << 20 });
  if (r.status !== 0) fail(`cannot decompress ${path} with ${tool[0]}: ${r.stderr?.toString() ?? r.error?.message}`);
  return r.stdout;
}

/** A cpio "newc" archive (what the kernel unpacks as an initramfs); written here so `cpio` is not needed. */
function cpioNewc(entries) {
  const chunks = [];
  const pad4 = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n) => n.toString(16).padStart(8, '0');
  let ino = 1;
  for (const { name, mode, data = Buffer.alloc(0), rdev = [0, 0] } of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const nameBytes = Buffer.from(`${name}\0`);
    const header = `070701${[ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0].map(hex).join('')}`;
    chunks.push(Buffer.from(header), nameBytes, pad4(110 + nameBytes.length), data, pad4(data.length));
  }
  return Buffer.concat(chunks);
}

function initScript(moduleFiles) {
  const mounts = WRITABLE.map((d) => `if [ -d /newroot${d} ]; then mount -t tmpfs -o mode=0755 tmpfs /newroot${d} || die "tmpfs ${d}"; fi`).join('\n');
  return `#!/bin/busybox sh
# Initramfs init: mount the host's / read-only over 9p, make the written-to directories tmpfs,
# mount the writable results share, then switch_root (not chroot: nsenter/unshare need a real root).
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "test:vm init: $*"; echo o > /proc/sysrq-trigger; sleep 60; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in ${moduleFiles.join(' ')}; do insmod /modules/$m || die "insmod $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot || die "mount the host root"
${mounts}
# The checkout again, in case it lies under one of those tmpfs directories (a clone in /tmp).
mkdir -p /newroot${REPO}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose reporoot /newroot${REPO} || die "mount the checkout"
mkdir -p /newroot${VM_IO}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmio /newroot${VM_IO} || die "mount the results share"
ln -s /proc/self/fd /dev/fd
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /bin/bash ${VM_IO}/job.sh
`;
}

/** True when a 64-bit ELF has a PT_INTERP header (is dynamically linked). */
function hasInterpreter(elf) {
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const [size, count] = [elf.readUInt16LE(0x36), elf.readUInt16LE(0x38)];
  return Array.from({ length: count }, (_, i) => elf.readUInt32LE(phoff + i * size)).includes(3);
}

function buildInitramfs(kernel, dir) {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) fail('no /bin/busybox: install busybox-static (see packaging/debian-test-packages.txt)');
  const elf = readFileSync(busybox);
  if (hasInterpreter(elf)) fail(`${busybox} is dynamically linked: install busybox-static`);
  const entries = ['bin', 'dev', 'proc', 'sys', 'newroot', 'modules'].map((d) => ({ name: d, mode: 0o40755 }));
  entries.push({ name: 'dev/console', mode: 0o20600, rdev: [5, 1] });
  entries.push({ name: 'bin/busybox', mode: 0o100755, data: elf });
  const moduleFiles = loadOrder(kernel.modules).map((name, i) => {
    const file = `${String(i).padStart(2, '0')}-${name}.ko`;
    entries.push({ name: `modules/${file}`, mode: 0o100644, data: moduleBytes(kernel.modules.get(name).path) });
    return file;
  });
  entries.push({ name: 'init', mode: 0o100755, data: Buffer.from(initScript(moduleFiles)) });
  const path = join(dir, 'initramfs.cpio');
  writeFileSync(path, cpioNewc(entries));
  return path;
}

const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

/** The command run inside the VM after switch_root: the tests, then the exit code to the share, then power off. */
function jobScript(files) {
  const env = {
    // The tests' own switches (KNOCKPORT_VM_ALL_ROWS, KP_DEBUG, ...) pass through.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(KNOCKPORT|KP)_/.test(k))),
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/tmp/home', // a tmpfs over /root would hide tools installed under it
    KNOCKPORT_VM: '1',
    KNOCKPORT_TIME_SCALE: TIME_SCALE,
    CI: process.env.CI ?? '1',
    TERM: 'dumb',
    NO_COLOR: '1',
  };
  const vitest = [
    // The runner loader: the default one writes the bundled config into the read-only repository.
    process.execPath,
    join(REPO, 'node_modules/vitest/vitest.mjs'),
    'run',
    '--configLoader',
    'runner',
    // Every kernel group (the files that wait and the ones that measure).
    '--project',
    'kernel*',
    '--reporter',
    'verbose',
    '--reporter',
    'json',
    '--outputFile.json',
    `${VM_IO}/results.json`,
    ...files,
  ];
  return `# Runs inside the VM (the host's bash), after switch_root.
mkdir -p /dev/pts /dev/shm /tmp/home
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
echo "test:vm: inside the VM: kernel $(uname -r), $(nproc) CPUs"
${Object.entries(env)
  .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
  .join('\n')}
cd ${shellQuote(REPO)}
${process.env.KNOCKPORT_VM_COMMAND ?? vitest.map(shellQuote).join(' ')}
echo $? > ${VM_IO}/exit-code.tmp && mv ${VM_IO}/exit-code.tmp ${VM_IO}/exit-code
sync
echo o > /proc/sysrq-trigger
sleep 60
`;
}

/** Per-file counts and durations from the JSON vitest left in a kernel's share, or undefined when it left none. */
function summarize(label, resultsFile) {
  if (!existsSync(resultsFile)) return undefined;
  const results = JSON.parse(readFileSync(resultsFile, 'utf8'));
  const lines = results.testResults.map((file) => {
    const count = (status) => file.assertionResults.filter((a) => a.status === status).length;
    const seconds = Math.round((file.endTime - file.startTime) / 1000);
    // The slowest tests, so that where the VM's time goes can be read from any run's log.
    const slowest = file.assertionResults
      .filter((a) => typeof a.duration === 'number')
      .sort((a, b) => b.duration - a.duration)
      .slice(0, 8)
      .map((a) => `\n    [${label}] ${Math.round(a.duration / 1000)} s  ${a.fullName ?? a.title}`)
      .join('');
    return `  [${label}] ${file.name.replace(`${REPO}/`, '')}: ${count('passed')} passed, ${count('failed')} failed, ${count('skipped') + count('pending') + count('todo')} skipped, ${seconds} s${slowest}`;
  });
  return {
    passed: results.numPassedTests,
    failed: results.numFailedTests,
    skipped: results.numPendingTests + results.numTodoTests,
    text:
      `[${label}] ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${results.numPendingTests + results.numTodoTests} skipped, ` +
      `of ${results.numTotalTests} tests in ${results.numTotalTestSuites} suites (${results.numFailedTestSuites} suites failed)\n${lines.join('\n')}`,
  };
}

/** Copies a stream to `out` line by line, each line prefixed (two VMs print at once). */
function prefixLines(stream, out, prefix) {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    if (lines.length > 0) out.write(lines.map((line) => `${prefix}${line}\n`).join(''));
  });
  stream.on('end', () => rest && out.write(`${prefix}${rest}\n`));
}

function qemuArgs(kernel, initrd, io, cpus) {
  const share = (id, path, tag, options = '') => [
    '-fsdev',
    `local,id=${id},path=${path},security_model=passthrough${options}`,
    '-device',
    `virtio-9p-pci,fsdev=${id},mount_tag=${tag}`,
  ];
  return [
    ...['-accel', 'tcg', '-cpu', 'max', '-m', '4096', '-smp', String(cpus), '-nographic', '-no-reboot', '-nic', 'none'],
    ...['-kernel', kernel.image, '-initrd', initrd, '-append', 'console=ttyS0 quiet panic=-1'],
    ...share('root', '/', 'hostroot', ',readonly=on,multidevs=remap'),
    ...share('repo', REPO, 'reporoot', ',readonly=on,multidevs=remap'),
    ...share('io', io, 'vmio'),
  ];
}

/** Boots one kernel and runs the files in it; resolves to what happened (never throws for a test failure). */
async function runVm(kernel, files, { qemu, cpus, signals }) {
  const label = kernel.series;
  const work = mkdtempSync(join(tmpdir(), `kp-vm-${label}-`));
  const io = join(work, 'io');
  mkdirSync(io);
  chmodSync(io, 0o755);
  const started = Date.now();
  const minutes = () => ((Date.now() - started) / 60_000).toFixed(1);
  let stopped = '';
  try {
    const initrd = buildInitramfs(kernel, work);
    writeFileSync(join(io, 'job.sh'), jobScript(files));
    process.stdout.write(
      `test:vm [${label}]: booting ${kernel.image} (${(statSync(initrd).size / 1e6).toFixed(1)} MB initramfs), ${cpus} CPU(s), ` +
        `time scale ${TIME_SCALE}, limit ${LIMIT_MINUTES} min\n`,
    );
    const vm = spawn(qemu, qemuArgs(kernel, initrd, io, cpus), { stdio: ['ignore', 'pipe', 'pipe'] });
    prefixLines(vm.stdout, process.stdout, `[${label}] `);
    prefixLines(vm.stderr, process.stderr, `[${label}] `);
    const timer = setTimeout(() => {
      stopped = `timed out after ${LIMIT_MINUTES} min`;
      process.stderr.write(`\ntest:vm [${label}]: time limit of ${LIMIT_MINUTES} min reached, killing qemu\n`);
      vm.kill('SIGKILL');
    }, LIMIT_MINUTES * 60_000);
    const onSignal = (signal) => {
      stopped = `interrupted by ${signal}`;
      vm.kill('SIGKILL');
    };
    signals.add(onSignal);
    await new Promise((done) => vm.once('close', done));
    clearTimeout(timer);
    signals.delete(onSignal);

    const summary = summarize(label, join(io, 'results.json'));
    const codeFile = join(io, 'exit-code');
    const code = existsSync(codeFile) ? readFileSync(codeFile, 'utf8').trim() : '';
    const failure = stopped
      ? `${stopped}, qemu killed`
      : !/^\d+$/.test(code)
        ? `the VM stopped without reporting an exit code (after ${minutes()} min; see its console above)`
        : code !== '0'
          ? `vitest exited with ${code} inside the VM (after ${minutes()} min)`
          : undefined;
    return { kernel, summary, failure, minutes: minutes() };
  } catch (err) {
    return { kernel, failure: err instanceof VmFailure ? err.message : String(err?.stack ?? err), minutes: minutes() };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function main() {
  const chosen = process.argv.slice(2);
  /** The files a kernel runs: those named on the command line, or its share of test/vm/tests.mjs. */
  const filesFor = (kernel) => (chosen.length > 0 ? chosen : vmTestsFor(kernel.series));
  for (const f of chosen) if (!existsSync(resolve(REPO, f))) fail(`no test file ${f}`);
  if (process.getuid?.() !== 0) fail('needs root (qemu shares / with passthrough permissions; the tests inside need root)');
  const qemu = which('qemu-system-x86_64') ?? fail('qemu-system-x86_64 not found: install qemu-system-x86');
  // qemu's -fsdev option syntax cannot carry these in a path.
  if (/[,\s]/.test(REPO)) fail(`the checkout's path has a comma or whitespace, which qemu cannot share: ${REPO}`);
  if (!existsSync(join(REPO, 'dist/cli/main.js'))) fail('dist/ is not built: run npm ci (or npm run build) first');

  const found = selectedKernels().map(findKernel);
  const missing = found.filter((k) => k.missing).map((k) => k.missing);
  if (missing.length > 0) fail(missing.join('\n'));

  const parallel = PARALLEL && found.length > 1;
  const cpus = CPUS;
  process.stdout.write(
    `test:vm: kernels ${found.map((k) => k.version).join(', ')} ${parallel ? 'at once' : 'one after another'}\n` +
      found.map((k) => `test:vm: [${k.series}] ${filesFor(k).join(' ')}\n`).join(''),
  );
  const signals = new Set();
  const onSignal = (signal) => signals.forEach((stop) => stop(signal));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const started = Date.now();
  const options = { qemu, cpus, signals };
  const outcomes = [];
  if (parallel) outcomes.push(...(await Promise.all(found.map((kernel) => runVm(kernel, filesFor(kernel), options)))));
  else for (const kernel of found) outcomes.push(await runVm(kernel, filesFor(kernel), options));

  process.stdout.write('\ntest:vm results, per kernel:\n');
  for (const { kernel, summary, failure, minutes } of outcomes) {
    process.stdout.write(
      `${summary?.text ?? `[${kernel.series}] no results`}\n[${kernel.series}] ${kernel.version}: ${failure ? `FAILED: ${failure}` : 'passed'} in ${minutes} min\n`,
    );
  }
  const total = (key) => outcomes.reduce((sum, o) => sum + (o.summary?.[key] ?? 0), 0);
  const failed = outcomes.filter((o) => o.failure);
  process.stdout.write(`test:vm: ${outcomes.length} kernels in ${((Date.now() - started) / 60_000).toFixed(1)} min\n`);
  process.stdout.write(`vm: ${total('passed')} passed, ${total('failed')} failed, ${total('skipped')} skipped\n`);
  if (failed.length > 0) fail(failed.map((o) => `${o.kernel.version}: ${o.failure}`).join('; '));
}

try {
  await main();
} catch (err) {
  process.stderr.write(`\ntest:vm FAILED: ${err instanceof VmFailure ? err.message : (err?.stack ?? err)}\n`);
  process.exitCode = 1;
}
