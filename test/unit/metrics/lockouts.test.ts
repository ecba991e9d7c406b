/** Lock events are counted and logged with names and counts only. */
import { describe, expect, it } from 'vitest';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { countRefusals, recordLock } from '../../../src/metrics/lockouts.js';
import { valueOf } from './values.js';
import { capturedLogger } from '../sessions/log-capture.js';

describe('lockout metrics', () => {
  it('counts a lock by factor and says what is refused for how long', async () => {
    const metrics = createDaemonMetrics(() => 0);
    const logs = capturedLogger('info');
    recordLock(logs.logger, metrics, { factor: 'step1-key', app: 'vpn', failures: 5, windowSeconds: 60, lockSeconds: 300 });
    recordLock(logs.logger, metrics, { factor: 'step2-token', app: 'vpn', user: 'bob', failures: 3, windowSeconds: 60, lockSeconds: 300 });
    expect(await valueOf(metrics.lockouts, { factor: 'step1-key' })).toBe(1);
    expect(await valueOf(metrics.lockouts, { factor: 'step2-token' })).toBe(1);
    const [app, code] = logs.lines();
    expect(app).toMatchObject({ app: 'vpn', msg: expect.stringMatching(/^app locked after 5 wrong keys within 60 s: every step-1 knock .* 300 s/) });
    expect(code).toMatchObject({ user: 'bob', msg: expect.stringMatching(/^one-time code locked after 3 wrong codes/) });
  });

  it('adds refusals by factor', async () => {
    const metrics = createDaemonMetrics(() => 0);
    countRefusals(metrics, { 'step1-key': 2, 'step1-otp': 1 });
    countRefusals(metrics, { 'step1-key': 1 });
    expect(await valueOf(metrics.lockoutRefusals, { factor: 'step1-key' })).toBe(3);
    expect(await valueOf(metrics.lockoutRefusals, { factor: 'step1-otp' })).toBe(1);
  });
});
