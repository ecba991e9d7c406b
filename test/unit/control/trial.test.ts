/**
 * `run --trial SECONDS` and `knock-port confirm`: the trial's clock, the confirm command over the
 * control socket (refused when no trial waits), `--trial`'s argument errors, and what `health`
 * prints for a trial and for report mode.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { registerConfirm } from '../../../src/cli/commands/confirm.js';
import { registerHealth } from '../../../src/cli/commands/health.js';
import { registerRun } from '../../../src/cli/commands/run.js';
import { createControlHandlers } from '../../../src/control/handlers.js';
import type { HealthReport } from '../../../src/control/protocol.js';
import { startControlServer, type ControlServer } from '../../../src/control/server.js';
import { MAX_TRIAL_SECONDS, Trial } from '../../../src/control/trial.js';
import { runCli } from '../client/cli-harness.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { testConfig } from '../step2/fixtures.js';

describe('Trial', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs its expiry once, after the seconds, when nobody confirms; health shows the seconds left until then', () => {
    const expired = vi.fn();
    const trial = new Trial(10, expired, () => Date.now());
    expect(trial.health()).toEqual({ seconds: 10, secondsLeft: 10 });
    vi.advanceTimersByTime(7_500);
    expect(trial.health()).toEqual({ seconds: 10, secondsLeft: 3 });
    expect(expired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(2_500);
    expect(expired).toHaveBeenCalledTimes(1);
    expect(trial.pending).toBe(false);
    expect(trial.health()).toBeUndefined();
    expect(() => trial.confirm()).toThrow(/not in a trial/);
  });

  it('a confirmation stops the clock, says how long was left, and cannot come twice', () => {
    const expired = vi.fn();
    const trial = new Trial(10, expired, () => Date.now());
    vi.advanceTimersByTime(4_000);
    expect(trial.confirm()).toBe(6);
    vi.advanceTimersByTime(60_000);
    expect(expired).not.toHaveBeenCalled();
    expect(trial.health()).toBeUndefined();
    expect(() => trial.confirm()).toThrow(/not in a trial \(it was started without --trial, or the trial was confirmed already\)/);
  });
});

describe('run --trial: argument errors', () => {
  it.each(['0', '-5', '2.5', 'soon', String(MAX_TRIAL_SECONDS + 1)])('refuses --trial %s as a usage error naming the range', async (value) => {
    const run = await runCli((program) => registerRun(program), ['run', '-c', '/nonexistent.yaml', '--trial', value]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(
      new RegExp(`argument '${value.replace('.', '\\.')}' is invalid\\. expected a whole number of seconds from 1 to ${MAX_TRIAL_SECONDS}`),
    );
  });

  it('documents exit code 12 in run --help', async () => {
    const help = await runCli((program) => registerRun(program), ['run', '--help']);
    expect(help.stdout).toMatch(/--trial <seconds>/);
    expect(help.stdout).toMatch(/12 --trial not confirmed in time/);
  });
});

describe('confirm and health over the control socket', () => {
  let dir: string;
  let socketPath: string;
  let server: ControlServer | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-trial-'));
    socketPath = join(dir, 'control.sock');
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const serve = async (health: HealthReport, trial?: Trial) => {
    const handlers = createControlHandlers({
      sessions: { list: () => [] },
      granter: { revoke: () => Promise.resolve(0) },
      config: () => testConfig('JBSWY3DPEHPK3PXP'),
      health: () => health,
      reload: () => Promise.resolve({ voided: 0 }),
      ...(trial ? { trial } : {}),
    });
    server = await startControlServer(socketPath, handlers, capturedLogger().logger);
  };

  it('confirm: exit 0 with the seconds left; again, or on a daemon started without --trial: exit 1, saying so', async () => {
    const trial = new Trial(300, () => undefined);
    await serve({ healthy: true, problems: [] }, trial);
    const confirmed = await runCli(registerConfirm, ['confirm', '--socket', socketPath]);
    expect(confirmed).toMatchObject({ exitCode: 0, stdout: expect.stringMatching(/^trial confirmed with (300|299) s left: the gate stays\n$/) as string });
    const again = await runCli(registerConfirm, ['confirm', '--socket', socketPath]);
    expect([again.exitCode, again.stderr]).toEqual([1, expect.stringMatching(/^knock-port: this daemon is not in a trial/)]);
    await server!.close();
    await serve({ healthy: true, problems: [] });
    const none = await runCli(registerConfirm, ['confirm', '--socket', socketPath]);
    expect([none.exitCode, none.stderr]).toEqual([1, expect.stringMatching(/^knock-port: this daemon is not in a trial/)]);
  });

  it('health prints the trial and the would-be drops of report mode after the verdict', async () => {
    await serve({
      healthy: true,
      problems: [],
      warnings: ['gate_mode report: the gate protects nothing'],
      gate: {
        mode: 'report',
        wouldDrop: [
          { protocol: 'tcp', port: 22, packets: 5 },
          { protocol: 'udp', port: 1194, packets: 0 },
        ],
      },
      trial: { seconds: 120, secondsLeft: 42 },
    });
    const run = await runCli(registerHealth, ['health', '--socket', socketPath]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toBe(
      'healthy\ngate: report mode, nothing dropped; packets it would have dropped: 22/tcp 5, 1194/udp 0\ntrial: the gate is removed in 42 s (of 120 s) unless knock-port confirm is run\n',
    );
    expect(run.stderr).toBe('knock-port: warning: gate_mode report: the gate protects nothing\n');
  });
});
