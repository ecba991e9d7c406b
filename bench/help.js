#!/usr/bin/env node
// `node bench/help.js [RUNS] [MAIN]`: how long `knock-port CMD --help` takes, beside `node -e 0` in the
// same run (the floor: Node.js starting and exiting). Each figure is the fastest of RUNS runs
// (default 9): wall time, and the child's CPU time (user + system, from this process's count of
// its waited-for children in /proc/self/stat), so a busy machine shows in the wall time and the
// ratio rather than in the CPU figure. MAIN (default: this checkout's dist/cli/main.js) compares
// another build. Needs the compiled dist/; Linux only (/proc).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const RUNS = Math.min(50, Math.max(3, Number(process.argv[2] ?? 9)));
const MAIN = process.argv[3] ?? fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const COMMANDS = [[], ['run'], ['knock'], ['check'], ['user', 'add'], ['user', 'remove'], ['sessions'], ['init']];
/** USER_HZ: the unit of /proc's CPU times on Linux. */
const TICKS_PER_SECOND = 100;

/** CPU time (ms) of every child this process has waited for: cutime + cstime. */
function childrenCpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SECOND;
}

/** One run of `node ARGS`: wall and CPU time in ms. */
function once(args) {
  return new Promise((resolve, reject) => {
    const cpuBefore = childrenCpuMs();
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`node ${args.join(' ')} exited ${code}`));
      else resolve({ wallMs: Number(process.hrtime.bigint() - started) / 1e6, cpuMs: childrenCpuMs() - cpuBefore });
    });
  });
}

async function fastest(args) {
  let wall = Infinity;
  let cpu = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const run = await once(args);
    wall = Math.min(wall, run.wallMs);
    cpu = Math.min(cpu, run.cpuMs);
  }
  return { wall, cpu };
}

const floor = await fastest(['-e', '0']);
const rows = [`| command | wall, fastest of ${RUNS} (ms) | CPU (ms) | wall × node -e 0 |`, '|---|---|---|---|'];
rows.push(`| node -e 0 | ${floor.wall.toFixed(0)} | ${floor.cpu.toFixed(0)} | 1.00 |`);
for (const command of COMMANDS) {
  const { wall, cpu } = await fastest([MAIN, ...command, '--help']);
  rows.push(`| knock-port ${[...command, '--help'].join(' ')} | ${wall.toFixed(0)} | ${cpu.toFixed(0)} | ${(wall / floor.wall).toFixed(2)} |`);
}
process.stdout.write(`${rows.join('\n')}\n`);
