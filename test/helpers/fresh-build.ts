/**
 * Kernel tests run the daemon from dist/ (bin/knock-port.js imports it), so a dist/ older than
 * src/ would test old code. Before the kernel projects start (vitest `globalSetup`), a source
 * file newer than its compiled .js, or without one, rebuilds dist/ once with tsc; a build that
 * fails stops the run with tsc's output (`--noEmitOnError`: dist/ stays stale, so the next run
 * fails the same way instead of testing half-built code). Several vitest projects or runs may
 * start at once: the build runs under a lock file, and whoever waited on it checks again.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
/** One lock per checkout, outside it (the VM mounts the repository read-only). */
const LOCK = join(tmpdir(), `knock-port-build-${createHash('sha256').update(ROOT).digest('hex').slice(0, 12)}.lock`);
/** A build takes well under a minute even on a busy machine; a holder this old is gone. */
const LOCK_WAIT_MS = 5 * 60_000;
const LOCK_POLL_MS = 250;

class StaleBuildError extends Error {
  override name = 'StaleBuildError';
}

/** The first source file (src/, relative) whose compiled .js is missing or older, if any. */
export function staleSource(): string | undefined {
  const sources = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'));
  return sources.find((file) => {
    const built = join(DIST, file.replace(/\.ts$/, '.js'));
    return !existsSync(built) || statSync(join(SRC, file)).mtimeMs > statSync(built).mtimeMs;
  });
}

function build(stale: string): void {
  process.stderr.write(`\n*** dist/ is older than src/ (src/${stale}): rebuilding it with tsc\n\n`);
  const tsc = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json', '--noEmitOnError'], { cwd: ROOT, encoding: 'utf8' });
  if (tsc.status !== 0) {
    const output = `${tsc.stdout}${tsc.stderr}${tsc.error ? String(tsc.error) : ''}`.trim();
    throw new StaleBuildError(
      `dist/ is older than src/ (src/${stale}) and rebuilding it failed, so the kernel tests would run old code; ` +
        `fix the errors below and run \`npm run build:ts\`:\n${output}`,
    );
  }
}

/** True when the lock file's holder (the pid written in it) no longer runs, or it is too old. */
function lockAbandoned(): boolean {
  try {
    if (Date.now() - statSync(LOCK).mtimeMs > LOCK_WAIT_MS) return true;
    const pid = Number(readFileSync(LOCK, 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return false; // just created, the pid not written yet
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Takes the lock (waiting for another holder, bounded); false when it timed out. */
async function acquireLock(): Promise<boolean> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (Date.now() < deadline) {
    try {
      const fd = openSync(LOCK, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (lockAbandoned()) rmSync(LOCK, { force: true });
      else await sleep(LOCK_POLL_MS);
    }
  }
  return false;
}

/** vitest globalSetup: rebuilds a stale dist/ once, or throws why it cannot. */
export default async function setup(): Promise<void> {
  if (staleSource() === undefined) return;
  if (!(await acquireLock())) throw new StaleBuildError(`dist/ is older than src/ and another build held ${LOCK} for ${LOCK_WAIT_MS / 60_000} minutes`);
  try {
    // Another run may have built it while this one waited for the lock.
    const stale = staleSource();
    if (stale !== undefined) build(stale);
  } finally {
    rmSync(LOCK, { force: true });
  }
}
