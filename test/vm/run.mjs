#!/usr/bin/env node
/**
 * Stock-kernel test tier (`npm run test:vm [-- FILE...]`): boots Debian's distribution kernel
 * under qemu (no KVM) with the host's `/` shared read-only over virtio-9p, and runs kernel
 * tests inside it with vitest. The host kernel lacks the nft `queue` expression, so this is
 * where nftables + NFQUEUE (what `capture: auto` picks on Debian and Ubuntu) is tested.
 *
 * Never skips: no suitable kernel, no qemu, a timeout or a missing exit code is a failure.
 * The recipe (modules, mounts, pitfalls) is in the project's stock-kernel VM reference.
 *
 * Environment: KNOCKPORT_VM_KERNEL (a /boot/vmlinuz-* to use), KNOCKPORT_VM_TIMEOUT_MINUTES
 * (default 40), KNOCKPORT_TIME_SCALE (default 5), KNOCKPORT_VM_COMMAND (a shell command to
 * run instead of vitest, for debugging the VM itself).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { VM_TESTS } from './tests.mjs';

const REPO = resolve(import.meta.dirname, '../..');
/** Slowdown the tests allow for (see test/helpers/vm.ts): measured 3-8x here with the cached 9p root. */
const TIME_SCALE = process.env.KNOCKPORT_TIME_SCALE ?? '5';
const LIMIT_MINUTES = Number(process.env.KNOCKPORT_VM_TIMEOUT_MINUTES ?? '40');
/** The 9p root's modules (loaded with their dependencies by the initramfs); everything else loads from the shared /lib/modules. */
const INITRAMFS_MODULES = [
  'virtio',
  'virtio_ring',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'netfs',
  'fscache',
  '9pnet',
  '9pnet_virtio',
  '9p',
];
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

/** The newest /boot/vmlinuz-<ver> whose /lib/modules/<ver> has nft_queue and a 9p root (the -cloud flavour has no 9p). */
function findKernel() {
  const wanted = process.env.KNOCKPORT_VM_KERNEL;
  const candidates = wanted
    ? [basename(wanted).replace(/^vmlinuz-/, '')]
    : readdirSync('/boot')
        .filter((f) => f.startsWith('vmlinuz-'))
        .map((f) => f.slice('vmlinuz-'.length));
  candidates.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  const rejected = [];
  for (const version of candidates) {
    const depFile = `/lib/modules/${version}/modules.dep`;
    if (!existsSync(depFile)) {
      rejected.push(`${version}: no ${depFile}`);
      continue;
    }
    const modules = modulePaths(version);
    const missing = ['nft_queue', 'nfnetlink_queue', ...INITRAMFS_MODULES].filter((m) => !modules.has(m) && !isBuiltin(version, m));
    if (missing.length === 0) return { version, image: wanted ?? `/boot/vmlinuz-${version}`, modules };
    rejected.push(`${version}: no module ${missing.join(', ')}`);
  }
  return fail(
    `no kernel in /boot can run this tier (it needs nft_queue and a virtio-9p root): ${rejected.join('; ') || 'no /boot/vmlinuz-*'}. ` +
      "Install Debian's standard kernel (apt-get install linux-image-amd64, not the -cloud flavour); see packaging/debian-test-packages.txt.",
  );
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
    '--project',
    'kernel',
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

/** Prints the per-file counts vitest's JSON reporter left in the share. */
function summarize(resultsFile) {
  if (!existsSync(resultsFile)) return;
  const results = JSON.parse(readFileSync(resultsFile, 'utf8'));
  const lines = results.testResults.map((file) => {
    const count = (status) => file.assertionResults.filter((a) => a.status === status).length;
    return `  ${file.name.replace(`${REPO}/`, '')}: ${count('passed')} passed, ${count('failed')} failed, ${count('skipped') + count('pending') + count('todo')} skipped`;
  });
  process.stdout.write(
    `\ntest:vm results inside the VM: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ` +
      `${results.numPendingTests + results.numTodoTests} skipped, of ${results.numTotalTests} tests in ${results.numTotalTestSuites} suites\n${lines.join('\n')}\n`,
  );
}

async function main() {
  const files = process.argv.slice(2).length > 0 ? process.argv.slice(2) : VM_TESTS;
  for (const f of files) if (!existsSync(resolve(REPO, f))) fail(`no test file ${f}`);
  if (process.getuid?.() !== 0) fail('needs root (qemu shares / with passthrough permissions; the tests inside need root)');
  const qemu = which('qemu-system-x86_64') ?? fail('qemu-system-x86_64 not found: install qemu-system-x86');
  // qemu's -fsdev option syntax cannot carry these in a path.
  if (/[,\s]/.test(REPO)) fail(`the checkout's path has a comma or whitespace, which qemu cannot share: ${REPO}`);
  if (!existsSync(join(REPO, 'dist/cli/main.js'))) fail('dist/ is not built: run npm ci (or npm run build) first');

  const kernel = findKernel();
  const work = mkdtempSync(join(tmpdir(), 'kp-vm-'));
  const io = join(work, 'io');
  mkdirSync(io);
  chmodSync(io, 0o755);
  const started = Date.now();
  let stopped = '';
  try {
    const initrd = buildInitramfs(kernel, work);
    writeFileSync(join(io, 'job.sh'), jobScript(files));
    process.stdout.write(
      `test:vm: booting ${kernel.image} (${(statSync(initrd).size / 1e6).toFixed(1)} MB initramfs), time scale ${TIME_SCALE}, limit ${LIMIT_MINUTES} min\n` +
        `test:vm: ${files.join(' ')}\n`,
    );
    const args = [
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-m',
      '4096',
      '-smp',
      '2',
      '-nographic',
      '-no-reboot',
      '-nic',
      'none',
      '-kernel',
      kernel.image,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 quiet panic=-1',
      '-fsdev',
      'local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap',
      '-device',
      'virtio-9p-pci,fsdev=root,mount_tag=hostroot',
      '-fsdev',
      `local,id=repo,path=${REPO},security_model=passthrough,readonly=on,multidevs=remap`,
      '-device',
      'virtio-9p-pci,fsdev=repo,mount_tag=reporoot',
      '-fsdev',
      `local,id=io,path=${io},security_model=passthrough`,
      '-device',
      'virtio-9p-pci,fsdev=io,mount_tag=vmio',
    ];
    const vm = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    vm.stdout.pipe(process.stdout);
    vm.stderr.pipe(process.stderr);
    const timer = setTimeout(() => {
      stopped = `timed out after ${LIMIT_MINUTES} min`;
      process.stderr.write(`\ntest:vm: time limit of ${LIMIT_MINUTES} min reached, killing qemu\n`);
      vm.kill('SIGKILL');
    }, LIMIT_MINUTES * 60_000);
    const onSignal = (signal) => {
      stopped = `interrupted by ${signal}`;
      vm.kill('SIGKILL');
    };
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    await new Promise((done) => vm.once('close', done));
    clearTimeout(timer);

    const minutes = ((Date.now() - started) / 60_000).toFixed(1);
    summarize(join(io, 'results.json'));
    if (stopped) fail(`${stopped}, qemu killed`);
    const codeFile = join(io, 'exit-code');
    const code = existsSync(codeFile) ? readFileSync(codeFile, 'utf8').trim() : '';
    if (!/^\d+$/.test(code)) fail(`the VM stopped without reporting an exit code (after ${minutes} min; see the console above)`);
    if (code !== '0') fail(`vitest exited with ${code} inside the VM (after ${minutes} min)`);
    process.stdout.write(`test:vm: passed in ${minutes} min\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`\ntest:vm FAILED: ${err instanceof VmFailure ? err.message : (err?.stack ?? err)}\n`);
  process.exitCode = 1;
}
