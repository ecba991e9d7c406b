/** What outlives a reload: kept objects, new limits applied to them, saved parts reloaded on restart (not the cookie secret). */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LockEvent } from '../../../src/auth/lockout.js';
import { applyReloadedLimits, openLastingState } from '../../../src/daemon/lasting-state.js';
import { fixtureConfig } from '../step1/fixture-config.js';
import { capturedLogger } from '../sessions/log-capture.js';

describe('LastingState', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-lasting-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function open(overrides: Parameters<typeof fixtureConfig>[0] = {}) {
    const locks: LockEvent[] = [];
    const global = fixtureConfig({ stateDir: dir, ...overrides }).global;
    const state = openLastingState(global, { logger: capturedLogger('info').logger, onLock: (e) => locks.push(e), onRefused: () => {}, onProblem: () => {} });
    return { state, locks };
  }

  it('makes a new cookie secret at every start and removes the file earlier versions kept', async () => {
    const saved = join(dir, 'step1-cookie.key');
    await writeFile(saved, `${'ab'.repeat(16)}\n`);
    const first = await open().state;
    await first.usedCodes.close();
    const second = await open().state;
    await second.usedCodes.close();
    expect(first.cookieSecret).toHaveLength(16);
    expect(second.cookieSecret.equals(first.cookieSecret)).toBe(false);
    expect(first.cookieSecret.equals(Buffer.from('ab'.repeat(16), 'hex'))).toBe(false);
    expect(existsSync(saved)).toBe(false);
  });

  it('applies a reload’s limits and lockout policy to the kept state, with the counts so far', async () => {
    const { state: opening, locks } = open({ rateLimitPerMinute: 2, lockoutAppFailures: 3 });
    const state = await opening;
    expect([state.step2Limiter.allow('a'), state.step2Limiter.allow('a'), state.step2Limiter.allow('a')]).toEqual([true, true, false]);
    state.lockout.fail('step2-key', 'vpn');
    state.lockout.fail('step2-key', 'vpn');
    applyReloadedLimits(state, fixtureConfig({ stateDir: dir, rateLimitPerMinute: 3, lockoutAppFailures: 2 }).global);
    expect(state.step2Limiter.allow('a')).toBe(true);
    expect(state.lockout.isLocked('step2-key', 'vpn')).toBe(false);
    state.lockout.fail('step2-key', 'vpn');
    expect(state.lockout.isLocked('step2-key', 'vpn')).toBe(true);
    expect(locks).toHaveLength(1);
    await state.usedCodes.close();
  });
});
