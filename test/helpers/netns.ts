/**
 * Network namespaces for kernel tests: unique names, a veth "wire" between two hosts,
 * and cleanup that runs even when a test fails. Traffic only ever goes to addresses
 * inside the namespaces created here. The plumbing itself is shared with `knock-port demo`.
 */
import { readFileSync } from 'node:fs';
import { missingCommands, type Netns } from '../../src/demo/netns.js';
import { IN_VM } from './vm.js';

export { Netns, destroyAll, run, tryRun, waitFor, wire, type Link } from '../../src/demo/netns.js';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * CI (`.ci/run` sets KNOCKPORT_CI=1) runs as root with every package list installed: a test
 * that would skip there for want of root or a command is a broken CI, not a skip.
 */
const IN_CI = process.env.KNOCKPORT_CI === '1';

/** Why kernel tests cannot run here, or undefined when they can. Printed loudly when skipping. */
export function kernelSkipReason(needs: string[] = ['ip', 'nft']): string | undefined {
  return requiredInCi(machineSkipReason(needs));
}

function machineSkipReason(needs: string[]): string | undefined {
  if (!isRoot) return 'kernel tests need root (network namespaces, nftables, raw sockets); run `sudo npm test`';
  const [missing] = missingCommands(needs);
  if (missing !== undefined) return `kernel tests need the '${missing}' command (see the README's system packages)`;
  return undefined;
}

/** `reason` as is, except in CI, where a test that should run cannot skip: it throws. */
export function requiredInCi(reason: string | undefined): string | undefined {
  if (reason !== undefined && IN_CI) throw new Error(`CI must run this test, but it would skip: ${reason}`);
  return reason;
}

/**
 * Logs the skip reason once per file so a skipped run is never silent. In the stock-kernel VM
 * (`npm run test:vm`) a skip is a failure: that tier exists to run these tests.
 */
export function announceSkip(file: string, reason: string | undefined): boolean {
  if (reason && IN_VM) throw new Error(`${file} must run in the stock-kernel VM but would skip: ${reason}`);
  if (reason) process.stderr.write(`\n*** SKIPPED ${file}: ${reason}\n\n`);
  return reason !== undefined;
}

/** The kernel test files the stock-kernel VM tier runs (test/vm/tests.mjs), as its source text. */
const VM_FILE_LIST = new URL('../vm/tests.mjs', import.meta.url);

/**
 * Whether a row of a backend matrix is left to the stock-kernel VM tier (`npm run test:vm`):
 * true when this kernel lacks a feature the row needs (`reason`, e.g. from nftQueueMissing()).
 * Such a row is the VM's, not a skip: it is announced and not registered at all, so no run
 * counts it as skipped, and its file (`file`, the path from the repository root) must be one the
 * VM runs, or the row would run nowhere (in CI that fails; elsewhere it is printed). In the VM
 * itself a missing feature fails, as announceSkip does.
 */
export function leftToTheVm(file: string, row: string, reason: string | undefined): boolean {
  if (reason === undefined) return false;
  if (IN_VM) throw new Error(`${file} [${row}] must run in the stock-kernel VM but cannot: ${reason}`);
  const inVmTier = readFileSync(VM_FILE_LIST, 'utf8').includes(`'${file}'`);
  const gap = inVmTier ? undefined : `${file} is not in test/vm/tests.mjs, so its row [${row}] runs nowhere (${reason})`;
  process.stderr.write(`\n*** LEFT TO THE VM TIER ${file} [${row}]: ${requiredInCi(gap) ?? reason}\n\n`);
  return true;
}

/**
 * True when a TCP connect from `ns` to addr:port completes within `timeoutMs`.
 * Uses bash's /dev/tcp so it needs nothing but bash and coreutils' timeout.
 */
export function tcpOpen(ns: Netns, addr: string, port: number, timeoutMs = 1000): boolean {
  const r = ns.tryExec('timeout', [String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${addr}/${port}`]);
  return r.ok;
}
