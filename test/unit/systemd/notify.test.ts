import { describe, expect, it, vi } from 'vitest';
import { SystemdNotifier, watchdogIntervalMs, type NotifySend } from '../../../src/systemd/notify.js';
import { capturedLogger } from '../sessions/log-capture.js';

function recorder(): { send: NotifySend; sent: Array<[string, string]> } {
  const sent: Array<[string, string]> = [];
  return { send: (path, message) => void sent.push([path, message]), sent };
}

const clock = () => 123_456_789n;

describe('systemd notifications', () => {
  it('sends the sd_notify messages to NOTIFY_SOCKET', () => {
    const { logger } = capturedLogger();
    const { send, sent } = recorder();
    const notifier = SystemdNotifier.fromEnvironment(logger, { NOTIFY_SOCKET: '/run/systemd/notify' }, { send, monotonicUsec: clock });
    expect(notifier.enabled).toBe(true);
    notifier.ready('step 1 on port 80 (nfqueue 0-1),\nstep 2 on HTTPS port 443');
    notifier.reloading();
    notifier.ready('again');
    notifier.status('busy');
    notifier.stopping();
    notifier.close();
    expect(sent).toEqual([
      ['/run/systemd/notify', 'READY=1\nSTATUS=step 1 on port 80 (nfqueue 0-1), step 2 on HTTPS port 443'],
      ['/run/systemd/notify', 'RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading the config'],
      ['/run/systemd/notify', 'READY=1\nSTATUS=again'],
      ['/run/systemd/notify', 'STATUS=busy'],
      ['/run/systemd/notify', 'STOPPING=1\nSTATUS=stopping'],
    ]);
  });

  it('MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds by default', () => {
    const { send, sent } = recorder();
    const before = process.hrtime.bigint() / 1000n;
    SystemdNotifier.fromEnvironment(capturedLogger().logger, { NOTIFY_SOCKET: '@abstract' }, { send }).reloading();
    const after = process.hrtime.bigint() / 1000n;
    const usec = BigInt(/MONOTONIC_USEC=(\d+)/.exec(sent[0]![1])![1]!);
    expect(usec >= before && usec <= after).toBe(true);
  });

  it('ignores ready and reloading once stopping (a reload ending during the stop)', () => {
    const { send, sent } = recorder();
    const notifier = SystemdNotifier.fromEnvironment(capturedLogger().logger, { NOTIFY_SOCKET: '/n' }, { send });
    notifier.stopping();
    notifier.reloading();
    notifier.ready('late');
    notifier.stopping();
    expect(sent.map(([, m]) => m)).toEqual(['STOPPING=1\nSTATUS=stopping']);
  });

  it('does nothing without NOTIFY_SOCKET, even with a watchdog', () => {
    vi.useFakeTimers();
    try {
      const send = vi.fn<NotifySend>();
      const notifier = SystemdNotifier.fromEnvironment(capturedLogger().logger, { WATCHDOG_USEC: '1000000' }, { send });
      expect(notifier.enabled).toBe(false);
      notifier.ready('x');
      notifier.reloading();
      notifier.stopping();
      vi.advanceTimersByTime(5_000);
      expect(send).not.toHaveBeenCalled();
    } finally {
      vi.useRealTimers();
    }
  });

  it('removes the variables from the environment (the commands it runs must not inherit them)', () => {
    const env: Record<string, string> = { NOTIFY_SOCKET: '/n', WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid), PATH: '/bin' };
    const notifier = SystemdNotifier.fromEnvironment(capturedLogger().logger, env, { send: () => {} });
    notifier.close();
    expect(env).toEqual({ PATH: '/bin' });
  });

  it('pings WATCHDOG=1 every WATCHDOG_USEC/2 from the event loop until closed', () => {
    vi.useFakeTimers();
    try {
      const { send, sent } = recorder();
      const notifier = SystemdNotifier.fromEnvironment(capturedLogger().logger, { NOTIFY_SOCKET: '/n', WATCHDOG_USEC: '2000000' }, { send });
      expect(sent.map(([, m]) => m)).toEqual(['WATCHDOG=1']); // at once: startup counts too
      vi.advanceTimersByTime(999);
      expect(sent).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(sent).toHaveLength(2);
      vi.advanceTimersByTime(3_000);
      expect(sent).toHaveLength(5);
      notifier.stopping(); // still pinging while the stop runs
      vi.advanceTimersByTime(1_000);
      expect(sent.filter(([, m]) => m === 'WATCHDOG=1')).toHaveLength(6);
      notifier.close();
      vi.advanceTimersByTime(10_000);
      expect(sent).toHaveLength(7);
    } finally {
      vi.useRealTimers();
    }
  });

  it('watchdog interval: half of WATCHDOG_USEC, only for this process', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' }, 42)).toBeUndefined();
    expect(watchdogIntervalMs({}, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 42)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }, 42)).toBeUndefined();
  });

  it('a failing send is logged once at warn and never thrown', () => {
    const { logger, lines } = capturedLogger();
    const send: NotifySend = () => {
      throw Object.assign(new Error('cannot send to the notification socket /gone'), { code: 'ENOENT' });
    };
    const notifier = SystemdNotifier.fromEnvironment(logger, { NOTIFY_SOCKET: '/gone' }, { send });
    expect(() => {
      notifier.ready('x');
      notifier.reloading();
      notifier.ready('y');
      notifier.stopping();
    }).not.toThrow();
    const warnings = lines().filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ notifySocket: '/gone', message: 'READY=1', err: 'cannot send to the notification socket /gone' });
  });
});
