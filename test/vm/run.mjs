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
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildInitramfs, fail, findKernel, initPrologue, KERNELS, NINEP_OPTIONS, ninepShare, runQemu, VmFailure, which } from './kernels.mjs';
import { vmTestsFor } from './tests.mjs';

const REPO = resolve(import.meta.dirname, '../..');
/** Slowdown the tests allow for (see test/helpers/vm.ts): measured 3-8x here with the cached 9p root. */
const TIME_SCALE = process.env.KNOCKPORT_TIME_SCALE ?? '5';
const LIMIT_MINUTES = Number(process.env.KNOCKPORT_VM_TIMEOUT_MINUTES ?? '40');
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

function initScript(moduleFiles) {
  const mounts = WRITABLE.map((d) => `if [ -d /newroot${d} ]; then mount -t tmpfs -o mode=0755 tmpfs /newroot${d} || die "tmpfs ${d}"; fi`).join('\n');
  return `${initPrologue(moduleFiles, 'test:vm')}
# Mount the host's / read-only over 9p, make the written-to directories tmpfs, mount the
# writable results share, then switch_root (not chroot: nsenter/unshare need a real root).
mount -t 9p -o ${NINEP_OPTIONS},ro,cache=loose hostroot /newroot || die "mount the host root"
${mounts}
# The checkout again, in case it lies under one of those tmpfs directories (a clone in /tmp).
mkdir -p /newroot${REPO}
mount -t 9p -o ${NINEP_OPTIONS},ro,cache=loose reporoot /newroot${REPO} || die "mount the checkout"
mkdir -p /newroot${VM_IO}
mount -t 9p -o ${NINEP_OPTIONS} vmio /newroot${VM_IO} || die "mount the results share"
ln -s /proc/self/fd /dev/fd
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /bin/bash ${VM_IO}/job.sh
`;
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

function qemuArgs(kernel, initrd, io, cpus) {
  return [
    ...['-accel', 'tcg', '-cpu', 'max', '-m', '4096', '-smp', String(cpus), '-nographic', '-no-reboot', '-nic', 'none'],
    ...['-kernel', kernel.image, '-initrd', initrd, '-append', 'console=ttyS0 quiet panic=-1 no_timer_check'],
    ...ninepShare('root', '/', 'hostroot', ',readonly=on,multidevs=remap'),
    ...ninepShare('repo', REPO, 'reporoot', ',readonly=on,multidevs=remap'),
    ...ninepShare('io', io, 'vmio'),
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
  try {
    const initrd = buildInitramfs(kernel, work, INITRAMFS_MODULES, initScript);
    writeFileSync(join(io, 'job.sh'), jobScript(files));
    process.stdout.write(
      `test:vm [${label}]: booting ${kernel.image} (${(statSync(initrd).size / 1e6).toFixed(1)} MB initramfs), ${cpus} CPU(s), ` +
        `time scale ${TIME_SCALE}, limit ${LIMIT_MINUTES} min\n`,
    );
    const stopped = await runQemu({ qemu, args: qemuArgs(kernel, initrd, io, cpus), label, limitMinutes: LIMIT_MINUTES, signals, tier: 'test:vm' });

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

  const found = selectedKernels().map((k) => findKernel(k, ['nft_queue', 'nfnetlink_queue', ...INITRAMFS_MODULES], 'nft_queue and a virtio-9p root'));
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
