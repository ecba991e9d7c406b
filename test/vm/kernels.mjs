/**
 * What the tiers that boot Debian's stock kernels under qemu share (`npm run test:vm`,
 * `npm run test:install`): finding a kernel in /boot with the modules a tier needs, an initramfs
 * built here (a static busybox, the kernel's own modules, an init script the tier writes), and
 * running qemu with a time limit, its console prefixed with the VM's label.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The stock kernels, each from Debian's packages (packaging/debian-test-packages.txt): Debian 12's
 * 6.1 (no table flag persist) and the 6.12 series Debian 13 runs.
 */
export const KERNELS = [
  { series: '6.1', pkg: 'linux-image-amd64' },
  { series: '6.12', pkg: 'linux-image-6.12-amd64' },
];

/** Options of a virtio-9p mount inside the VM (the host's files, read through qemu). */
export const NINEP_OPTIONS = 'trans=virtio,version=9p2000.L,msize=512000';

export class VmFailure extends Error {}

export function fail(message) {
  throw new VmFailure(message);
}

export function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || undefined;
}

/**
 * The newest /boot/vmlinuz-<series>.* whose /lib/modules has every module in `required` (a
 * module file or built in), or why none: `{ series, missing }` with the package to install.
 * `purpose` says in the message what the modules are for.
 */
export function findKernel({ series, pkg }, required, purpose) {
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
    const missing = required.filter((m) => !modules.has(m) && !isBuiltin(version, m));
    if (missing.length === 0) return { series, version, image: `/boot/vmlinuz-${version}`, modules };
    rejected.push(`${version}: no module ${missing.join(', ')}`);
  }
  return {
    series,
    missing:
      `no Debian ${series} kernel in /boot can run this tier (it needs ${purpose})` +
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

/** The named modules with their dependencies first (the order differs between kernel builds). */
function loadOrder(modules, roots) {
  const order = [];
  const visit = (name) => {
    const mod = modules.get(name);
    if (!mod || order.includes(name)) return; // built in, or already placed
    mod.deps.forEach(visit);
    order.push(name);
  };
  roots.forEach(visit);
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

/** True when a 64-bit ELF has a PT_INTERP header (is dynamically linked). */
function hasInterpreter(elf) {
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const [size, count] = [elf.readUInt16LE(0x36), elf.readUInt16LE(0x38)];
  return Array.from({ length: count }, (_, i) => elf.readUInt32LE(phoff + i * size)).includes(3);
}

/**
 * Writes `dir`/initramfs.cpio: a static busybox, the `modules` (with their dependencies, as
 * numbered files in load order) and the init script `initScript(moduleFiles)` returns. Returns its path.
 */
export function buildInitramfs(kernel, dir, modules, initScript) {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) fail('no /bin/busybox: install busybox-static (see packaging/debian-test-packages.txt)');
  const elf = readFileSync(busybox);
  if (hasInterpreter(elf)) fail(`${busybox} is dynamically linked: install busybox-static`);
  const entries = ['bin', 'dev', 'proc', 'sys', 'newroot', 'modules'].map((d) => ({ name: d, mode: 0o40755 }));
  entries.push({ name: 'dev/console', mode: 0o20600, rdev: [5, 1] });
  entries.push({ name: 'bin/busybox', mode: 0o100755, data: elf });
  const moduleFiles = loadOrder(kernel.modules, modules).map((name, i) => {
    const file = `${String(i).padStart(2, '0')}-${name}.ko`;
    entries.push({ name: `modules/${file}`, mode: 0o100644, data: moduleBytes(kernel.modules.get(name).path) });
    return file;
  });
  entries.push({ name: 'init', mode: 0o100755, data: Buffer.from(initScript(moduleFiles)) });
  const path = join(dir, 'initramfs.cpio');
  writeFileSync(path, cpioNewc(entries));
  return path;
}

/** The first lines of an initramfs init script: busybox, /proc, /sys, /dev, the console, the modules. */
export function initPrologue(moduleFiles, tier) {
  return `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "${tier} init: $*"; echo o > /proc/sysrq-trigger; sleep 60; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in ${moduleFiles.join(' ')}; do insmod /modules/$m || die "insmod $m"; done`;
}

/** qemu options that share a host directory over virtio-9p under `tag`. */
export function ninepShare(id, path, tag, options = '') {
  return ['-fsdev', `local,id=${id},path=${path},security_model=passthrough${options}`, '-device', `virtio-9p-pci,fsdev=${id},mount_tag=${tag}`];
}

/** Copies a stream to `out` line by line, each line prefixed (two VMs print at once); `onLine` sees each line. */
export function prefixLines(stream, out, prefix, onLine = () => {}) {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    lines.forEach(onLine);
    if (lines.length > 0) out.write(lines.map((line) => `${prefix}${line}\n`).join(''));
  });
  stream.on('end', () => rest && out.write(`${prefix}${rest}\n`));
}

/**
 * Runs qemu until it exits, killing it after `limitMinutes` or when one of `signals` is called
 * (SIGINT/SIGTERM of the runner). Its console goes to stdout/stderr prefixed with `[label] `.
 * Resolves to why it was stopped ('' when it exited by itself).
 */
export async function runQemu({ qemu, args, label, limitMinutes, signals, tier, onLine }) {
  let stopped = '';
  const vm = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  prefixLines(vm.stdout, process.stdout, `[${label}] `, onLine);
  prefixLines(vm.stderr, process.stderr, `[${label}] `);
  const timer = setTimeout(() => {
    stopped = `timed out after ${limitMinutes} min`;
    process.stderr.write(`\n${tier} [${label}]: time limit of ${limitMinutes} min reached, killing qemu\n`);
    vm.kill('SIGKILL');
  }, limitMinutes * 60_000);
  const onSignal = (signal) => {
    stopped = `interrupted by ${signal}`;
    vm.kill('SIGKILL');
  };
  signals.add(onSignal);
  await new Promise((done) => vm.once('close', done));
  clearTimeout(timer);
  signals.delete(onSignal);
  return stopped;
}
