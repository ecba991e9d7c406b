#!/usr/bin/env node
/**
 * `npm run test:changed [-- --since REV] [-- --list]`: the unit and kernel test files that cover
 * what changed, so a contributor gets an answer in minutes instead of the whole suite's half hour.
 *
 * What changed: the working tree against REV (default HEAD: uncommitted and untracked files),
 * or everything since REV (`--since main~3`). What covers it:
 *   - a changed test file runs itself;
 *   - a changed test helper runs every test file that imports it;
 *   - a changed source file runs the unit tests of its folder (test/unit/<folder>/) and every unit
 *     test that imports it, and the kernel folders that exercise it (KERNEL_COVERAGE below: kernel
 *     tests drive the real daemon as a process, so imports cannot tell);
 *   - a change to the build, the test configuration or a file no rule knows runs everything.
 * Kernel files need root (as the whole kernel tier does); `dist/` is rebuilt first when stale.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');

/** Source folders (under src/, or native/) and the kernel test folders or files that exercise them. */
const KERNEL_COVERAGE = {
  auth: ['daemon/one-time-codes', 'daemon/e2e', 'attacks'],
  capture: ['capture', 'step1', 'daemon/e2e'],
  cli: ['daemon', 'firewall/check', 'firewall/interfaces', 'client'],
  client: ['client', 'step1/invisible'],
  cluster: ['cluster'],
  config: ['daemon', 'firewall/check', 'firewall/interfaces', 'firewall/always-allow'],
  control: ['daemon', 'packaging/unprivileged'],
  'daemon.ts': ['daemon', 'firewall/host-firewall', 'firewall/table-owner'],
  daemon: ['daemon', 'firewall/host-firewall', 'firewall/table-owner', 'firewall/admission', 'cluster'],
  demo: ['demo'],
  firewall: ['firewall', 'scenarios'],
  metrics: ['daemon/e2e', 'attacks'],
  native: ['capture', 'step1', 'firewall/table-owner', 'daemon/e2e'],
  packet: ['step1', 'attacks', 'firewall/prefilter'],
  sessions: ['daemon', 'firewall/admission'],
  shared: ['daemon/e2e', 'daemon/fail2ban', 'firewall/always-allow'],
  step1: ['step1', 'attacks', 'firewall/prefilter', 'firewall/step1-budget-oracle'],
  'step1-workers': ['step1', 'daemon/e2e', 'daemon/fail2ban', 'attacks'],
  step2: ['daemon/e2e', 'daemon/fail2ban', 'attacks', 'waf'],
  systemd: ['daemon/systemd-notify', 'packaging'],
};

/** Files whose change can affect any test: everything runs. */
const EVERYTHING = /^(package(-lock)?\.json|tsconfig.*\.json|vitest\.config\.ts|binding\.gyp|test\/helpers\/(vm|netns|sandbox|run-summary|fresh-build)\.ts)$/;
/** Files no test covers. */
const NO_TESTS =
  /^(docs\/|README|CHANGELOG|LICENSE|bench\/|\.github\/|\.ci\/|\.editorconfig|\.prettier|eslint\.config|\.dependency-cruiser|packaging\/(?!deb\/))/;

function git(...args) {
  return execFileSync('git', args, { cwd: REPO, encoding: 'utf8' }).split('\n').filter(Boolean);
}

function changedFiles(since) {
  const untracked = git('ls-files', '--others', '--exclude-standard');
  return [...new Set([...git('diff', '--name-only', since), ...untracked])].filter((f) => existsSync(join(REPO, f)) || f.startsWith('src/'));
}

function testFiles(dir) {
  const out = [];
  const walk = (d) => {
    if (!existsSync(join(REPO, d))) return;
    for (const entry of readdirSync(join(REPO, d), { withFileTypes: true })) {
      const path = `${d}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.test.ts')) out.push(path);
    }
  };
  walk(dir);
  return out;
}

const ALL_TESTS = [...testFiles('test/unit'), ...testFiles('test/kernel')];

/** Test files (and helpers, one level) that import `file`, by its path without extension. */
function importers(file) {
  const stem = file.replace(/\.(ts|js|mjs)$/, '');
  return ALL_TESTS.filter((test) => {
    const text = readFileSync(join(REPO, test), 'utf8');
    for (const m of text.matchAll(/from '(\.[^']+)'/g)) {
      const target = relative(REPO, resolve(dirname(join(REPO, test)), m[1])).replace(/\.(ts|js|mjs)$/, '');
      if (target === stem) return true;
      // Through a test helper that imports it.
      if (target.startsWith('test/helpers/') && helperImports(`${target}.ts`, stem)) return true;
    }
    return false;
  });
}

function helperImports(helper, stem) {
  if (!existsSync(join(REPO, helper))) return false;
  const text = readFileSync(join(REPO, helper), 'utf8');
  return [...text.matchAll(/from '(\.[^']+)'/g)].some((m) => relative(REPO, resolve(dirname(join(REPO, helper)), m[1])).replace(/\.(ts|js|mjs)$/, '') === stem);
}

function kernelFilesFor(area) {
  return (KERNEL_COVERAGE[area] ?? []).flatMap((entry) =>
    existsSync(join(REPO, 'test/kernel', `${entry}.test.ts`)) ? [`test/kernel/${entry}.test.ts`] : testFiles(`test/kernel/${entry}`),
  );
}

/** The test files covering `files`, or 'all'. */
export function selectTests(files) {
  const selected = new Set();
  for (const file of files) {
    if (EVERYTHING.test(file)) return 'all';
    if (NO_TESTS.test(file)) continue;
    if (file.endsWith('.test.ts')) {
      selected.add(file);
    } else if (file.startsWith('src/') || file.startsWith('native/')) {
      const area = file.startsWith('native/') ? 'native' : (file.split('/')[1] ?? '');
      if (!(area in KERNEL_COVERAGE) && area !== 'native') return 'all';
      testFiles(`test/unit/${area.replace(/\.ts$/, '')}`).forEach((t) => selected.add(t));
      kernelFilesFor(area).forEach((t) => selected.add(t));
      importers(file).forEach((t) => selected.add(t));
    } else if (file.startsWith('test/')) {
      const users = importers(file);
      // A fixture or helper nothing imports by path (a worker script, a golden file): its folder's tests.
      (users.length > 0 ? users : testFiles(dirname(file))).forEach((t) => selected.add(t));
    } else if (file.startsWith('packaging/deb/') || file.startsWith('bin/')) {
      testFiles('test/kernel/packaging').forEach((t) => selected.add(t));
    } else {
      return 'all';
    }
  }
  return [...selected].filter((f) => existsSync(join(REPO, f))).sort();
}

function main() {
  const args = process.argv.slice(2);
  const sinceAt = args.indexOf('--since');
  const since = sinceAt >= 0 ? args[sinceAt + 1] : 'HEAD';
  if (!since) throw new Error('--since needs a git revision, e.g. --since main~3');
  const files = changedFiles(since);
  const tests = selectTests(files);
  const described = tests === 'all' ? 'every test file' : `${tests.length} test file(s)`;
  console.log(`changed since ${since}: ${files.length} file(s) -> ${described}`);
  if (tests !== 'all') for (const t of tests) console.log(`  ${t}`);
  if (args.includes('--list')) return 0;
  if (tests !== 'all' && tests.length === 0) {
    console.log('nothing to run');
    return 0;
  }
  const vitest = join(REPO, 'node_modules/vitest/vitest.mjs');
  const r = spawnSync(process.execPath, [vitest, 'run', ...(tests === 'all' ? [] : tests)], { cwd: REPO, stdio: 'inherit' });
  return r.status ?? 1;
}

if (basename(process.argv[1] ?? '') === 'changed.mjs') process.exitCode = main();
