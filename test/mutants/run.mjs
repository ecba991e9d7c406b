#!/usr/bin/env node
/**
 * Mutation check (`npm run test:mutants`): each mutant in mutants.mjs is a deliberate fail-open
 * bug (a port that opens, a check that lets a forged or replayed knock through). The runner
 * applies one at a time to a scratch copy of the repository, rebuilds dist/ there and runs the
 * test files named to catch it. A mutant the tests do not fail on is a gap in the suite.
 *
 * The checkout is never touched: the copy is `git archive` of a commit (HEAD by default) in
 * /tmp, with node_modules linked entry by entry and the native addon copied from the checkout
 * (mutants never touch native/, so node-gyp never runs). Before any mutant, the unmutated copy
 * must pass every test command the selected mutants use, or the results would mean nothing.
 *
 * Options: --list, --only ID (repeatable, or comma-separated), --rev COMMIT, --with FILE (repeatable:
 * the checkout's FILE as it is now replaces the commit's, e.g. a new test not yet committed), --keep
 * (leave the scratch copy and the logs in /tmp). Exit status: 0 when every mutant was killed; 1 when one
 * survived, did not apply or did not build; 2 when the unmutated copy fails its tests.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { MUTANTS } from './mutants.mjs';

const REPO = resolve(import.meta.dirname, '../..');
const ADDON = 'build/Release/knockport_native.node';
/** Longer than any test's own timeout, so vitest reports a hung test before this fires. */
const RUN_LIMIT_MS = 15 * 60_000;
/** Vite's and vitest's caches: never shared with the checkout. */
const CACHE_ENTRIES = new Set(['.vite', '.vitest', '.cache']);

class MutantsFailure extends Error {}

function parseArgs(argv) {
  const options = { list: false, only: [], rev: 'HEAD', keep: false, with: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) usage(`${arg} needs a value`);
      return next;
    };
    if (arg === '--list') options.list = true;
    else if (arg === '--keep') options.keep = true;
    else if (arg === '--only') options.only.push(...value().split(',').filter(Boolean));
    else if (arg === '--rev') options.rev = value();
    else if (arg === '--with') options.with.push(value());
    else usage(`unknown argument ${arg}`);
  }
  return options;
}

function usage(message) {
  process.stderr.write(`test:mutants: ${message}\nusage: node test/mutants/run.mjs [--list] [--only ID[,ID...]] [--rev COMMIT] [--with FILE]... [--keep]\n`);
  process.exit(2);
}

/** A malformed list is a bug in the list: refuse it before any work. */
function checkList(mutants) {
  const problems = [];
  const ids = new Set();
  for (const m of mutants) {
    const where = `mutant ${m.id ?? '(no id)'}`;
    for (const field of ['id', 'description', 'file', 'find', 'replace'])
      if (typeof m[field] !== 'string' || m[field] === '') problems.push(`${where}: ${field} missing`);
    if (!Array.isArray(m.tests) || m.tests.length === 0) problems.push(`${where}: tests missing`);
    if (m.find === m.replace) problems.push(`${where}: replace equals find`);
    if (m.file?.startsWith('native/')) problems.push(`${where}: native/ would need node-gyp; mutate TypeScript only`);
    if (ids.has(m.id)) problems.push(`${where}: duplicate id`);
    ids.add(m.id);
    for (const file of m.tests ?? []) if (!existsSync(join(REPO, file))) problems.push(`${where}: no test file ${file} in the checkout`);
  }
  if (problems.length > 0) throw new MutantsFailure(`mutants.mjs is malformed:\n  ${problems.join('\n  ')}`);
}

function selected(mutants, only) {
  if (only.length === 0) return mutants;
  const unknown = only.filter((id) => !mutants.some((m) => m.id === id));
  if (unknown.length > 0) usage(`no mutant ${unknown.join(', ')} (see --list)`);
  return mutants.filter((m) => only.includes(m.id));
}

function printList(mutants) {
  for (const m of mutants) {
    process.stdout.write(`${m.id}\n  bug:   ${m.description}\n  file:  ${m.file}\n  tests: ${m.tests.join(' ')}${m.testName ? ` -t '${m.testName}'` : ''}\n`);
  }
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.error) throw new MutantsFailure(`${command} could not run: ${result.error.message}`);
  return result;
}

/** The commit's tracked files in a fresh directory, node_modules linked and the addon copied in. */
function makeScratchCopy(rev, overlay) {
  const dir = mkdtempSync(join(tmpdir(), 'knock-port-mutants-'));
  const tar = join(dir, '.source.tar');
  const archived = run('git', ['-C', REPO, 'archive', '--format=tar', '-o', tar, rev]);
  if (archived.status !== 0) throw new MutantsFailure(`git archive ${rev} failed: ${archived.stderr.trim()}`);
  const extracted = run('tar', ['-xf', tar, '-C', dir]);
  if (extracted.status !== 0) throw new MutantsFailure(`tar failed: ${extracted.stderr.trim()}`);
  rmSync(tar);
  for (const file of overlay) {
    if (!existsSync(join(REPO, file))) throw new MutantsFailure(`--with ${file}: no such file in the checkout`);
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(REPO, file), join(dir, file));
  }
  // Each entry linked, not the directory: vitest's cache then lands in the copy, not the checkout.
  const modules = join(REPO, 'node_modules');
  if (!existsSync(modules)) throw new MutantsFailure('node_modules missing in the checkout: run npm ci first');
  mkdirSync(join(dir, 'node_modules'));
  for (const entry of readdirSync(modules)) if (!CACHE_ENTRIES.has(entry)) symlinkSync(join(modules, entry), join(dir, 'node_modules', entry));
  if (!existsSync(join(REPO, ADDON))) throw new MutantsFailure(`${ADDON} missing in the checkout: run npm run build first`);
  mkdirSync(join(dir, 'build/Release'), { recursive: true });
  copyFileSync(join(REPO, ADDON), join(dir, ADDON));
  mkdirSync(join(dir, '.mutants-logs'));
  return dir;
}

/** dist/ from the copy's src/ (incremental: a mutant changes one file). */
function build(dir) {
  const tsc = join(dir, 'node_modules/typescript/bin/tsc');
  const result = run(process.execPath, [tsc, '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', '.mutants.tsbuildinfo'], { cwd: dir });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}`.trim() };
}

function occurrences(text, find) {
  let count = 0;
  for (let at = text.indexOf(find); at >= 0; at = text.indexOf(find, at + 1)) count++;
  return count;
}

/** Why the mutant cannot be applied to the copy, or undefined when its text occurs exactly once. */
function applicability(dir, mutant) {
  const path = join(dir, mutant.file);
  if (!existsSync(path)) return `${mutant.file} does not exist`;
  const count = occurrences(readFileSync(path, 'utf8'), mutant.find);
  return count === 1 ? undefined : `its text occurs ${count} times in ${mutant.file} (must be exactly once)`;
}

/** The vitest command of a mutant; mutants with the same one share the sanity run. */
function testCommand(mutant) {
  return { files: mutant.tests, testName: mutant.testName };
}

function commandKey(command) {
  return JSON.stringify([command.files, command.testName ?? null]);
}

function describeCommand(command) {
  return `${command.files.join(' ')}${command.testName ? ` -t '${command.testName}'` : ''}`;
}

/**
 * Runs vitest in the copy; resolves to { failed, firstFailure, seconds, log }. The first failure
 * is the first failed test in the order of the files given (a suite-level error counts too).
 */
async function runVitest(dir, command, label) {
  const report = join(dir, '.mutants-logs', `${label}.json`);
  const log = join(dir, '.mutants-logs', `${label}.log`);
  rmSync(report, { force: true });
  const vitest = join(dir, 'node_modules/vitest/vitest.mjs');
  const args = [vitest, 'run', ...command.files, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`];
  if (command.testName) args.push('-t', command.testName);
  const started = performance.now();
  const { code, output } = await spawnBounded(process.execPath, args, dir, RUN_LIMIT_MS);
  const seconds = (performance.now() - started) / 1000;
  writeFileSync(log, output);
  const firstFailure = firstFailed(report, dir, command.files);
  const timedOut = code === 'timeout';
  const failed = timedOut || code !== 0 || firstFailure !== undefined;
  const ran = testsRun(report);
  return {
    failed,
    timedOut,
    firstFailure: firstFailure ?? (timedOut ? 'run timed out' : failed ? `vitest exited ${code} (see ${log})` : undefined),
    seconds,
    log,
    ran,
  };
}

function spawnBounded(command, args, cwd, limitMs) {
  return new Promise((resolveRun) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
    let output = '';
    const collect = (chunk) => (output += chunk.toString());
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The whole group: vitest's workers and the daemons its tests started.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, limitMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code: timedOut ? 'timeout' : code, output });
    });
  });
}

function readReport(report) {
  if (!existsSync(report)) return undefined;
  try {
    return JSON.parse(readFileSync(report, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Tests that passed or failed (not skipped): a run that ran nothing proves nothing. */
function testsRun(report) {
  const parsed = readReport(report);
  if (!parsed) return 0;
  return (parsed.numPassedTests ?? 0) + (parsed.numFailedTests ?? 0);
}

function firstFailed(report, dir, files) {
  const parsed = readReport(report);
  if (!parsed) return undefined;
  const results = [...(parsed.testResults ?? [])];
  const order = (result) => files.indexOf(relative(dir, result.name));
  results.sort((a, b) => order(a) - order(b));
  for (const result of results) {
    const file = relative(dir, result.name);
    const test = (result.assertionResults ?? []).find((a) => a.status === 'failed');
    if (test) return `${file} > ${test.fullName ?? test.title}`;
    if (result.status === 'failed') return `${file} (suite error: ${firstLine(result.message)})`;
  }
  return undefined;
}

function firstLine(text) {
  return (text ?? '').split('\n').find((l) => l.trim() !== '') ?? 'no message';
}

function formatSeconds(seconds) {
  return seconds >= 60 ? `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s` : `${seconds.toFixed(1)}s`;
}

function printTable(rows) {
  const header = ['mutant', 'result', 'time'];
  const cells = rows.map((r) => [r.id, r.result, r.time]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) =>
    c
      .map((cell, i) => cell.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  process.stdout.write(`\n${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}\n${cells.map(line).join('\n')}\n`);
}

function say(message) {
  process.stdout.write(`${message}\n`);
}

/** Every distinct test command of the mutants, on the unmutated copy: each must pass and run something. */
async function sanity(dir, mutants) {
  const commands = new Map();
  for (const m of mutants) commands.set(commandKey(testCommand(m)), testCommand(m));
  let index = 0;
  for (const command of commands.values()) {
    say(`sanity ${++index}/${commands.size}: ${describeCommand(command)}`);
    const outcome = await runVitest(dir, command, `sanity-${index}`);
    if (outcome.failed || outcome.ran === 0) {
      const tail = readFileSync(outcome.log, 'utf8').split('\n').slice(-40).join('\n');
      throw new MutantsFailure(
        `the unmutated copy does not pass ${describeCommand(command)} (${outcome.ran === 0 ? 'no test ran' : outcome.firstFailure}); mutant results would mean nothing.\n${tail}`,
        { cause: 'sanity' },
      );
    }
    say(`  passed, ${outcome.ran} tests in ${formatSeconds(outcome.seconds)}`);
  }
}

async function runMutant(dir, mutant) {
  const path = join(dir, mutant.file);
  const original = readFileSync(path, 'utf8');
  const started = performance.now();
  const time = () => formatSeconds((performance.now() - started) / 1000);
  writeFileSync(
    path,
    original.replace(mutant.find, () => mutant.replace),
  );
  try {
    const built = build(dir);
    if (!built.ok) return { id: mutant.id, ok: false, result: `DID NOT BUILD: ${firstLine(built.output)}`, time: time() };
    const outcome = await runVitest(dir, testCommand(mutant), mutant.id);
    if (!outcome.failed) return { id: mutant.id, ok: false, result: 'SURVIVED', time: time() };
    return { id: mutant.id, ok: true, result: `killed by ${outcome.firstFailure}`, time: time() };
  } finally {
    writeFileSync(path, original);
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  checkList(MUTANTS);
  const mutants = selected(MUTANTS, options.only);
  if (options.list) {
    printList(mutants);
    return 0;
  }
  const started = performance.now();
  const dir = makeScratchCopy(options.rev, options.with);
  say(`scratch copy of ${options.rev}${options.with.length > 0 ? ` with ${options.with.join(', ')} from the checkout` : ''}: ${dir}`);
  const cleanup = () => {
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  };
  const interrupted = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const rows = [];
    const applicable = [];
    for (const m of mutants) {
      const why = applicability(dir, m);
      if (why) {
        process.stderr.write(`test:mutants: mutant ${m.id} does not apply: ${why}\n`);
        rows.push({ id: m.id, ok: false, result: `DID NOT APPLY: ${why}`, time: '-' });
      } else applicable.push(m);
    }
    const built = build(dir);
    if (!built.ok) throw new MutantsFailure(`the unmutated copy does not build:\n${built.output}`, { cause: 'sanity' });
    await sanity(dir, applicable);
    for (const m of applicable) {
      say(`mutant ${m.id}: ${m.description}`);
      const row = await runMutant(dir, m);
      say(`  ${row.result} (${row.time})`);
      rows.push(row);
    }
    const order = (row) => mutants.findIndex((m) => m.id === row.id);
    printTable(rows.sort((a, b) => order(a) - order(b)));
    const bad = rows.filter((r) => !r.ok);
    say(`\n${rows.length - bad.length} of ${rows.length} mutants killed; total ${formatSeconds((performance.now() - started) / 1000)}`);
    if (options.keep) say(`scratch copy and logs kept in ${dir}`);
    return bad.length === 0 ? 0 : 1;
  } catch (err) {
    if (err instanceof MutantsFailure && err.cause === 'sanity') {
      process.stderr.write(`test:mutants: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`test:mutants: ${err instanceof MutantsFailure ? err.message : err.stack}\n`);
    process.exit(1);
  },
);
