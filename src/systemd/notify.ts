/**
 * systemd's service notifications (sd_notify, for `Type=notify` units): READY=1 once the daemon
 * serves, RELOADING=1 / READY=1 around a reload, STOPPING=1, STATUS= lines for `systemctl status`,
 * and WATCHDOG=1 pings from the event loop while the unit has `WatchdogSec=`. Each message is one
 * datagram to $NOTIFY_SOCKET, sent by the native addon (Node has no unix datagram sockets).
 * Without NOTIFY_SOCKET (not started by systemd) every call does nothing.
 */
import { callNative, loadNativeAddon } from '../native/addon.js';
import { errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

/** Sends one datagram to the socket (a path, or abstract when it starts with '@'); throws on failure. */
export type NotifySend = (socketPath: string, message: string) => void;

/** What the daemon tells its service manager. */
export interface ServiceNotifier {
  /** READY=1: startup (or a reload) is complete; `status` becomes the STATUS= line. */
  ready(status: string): void;
  /** RELOADING=1 with MONOTONIC_USEC= (systemd 253 and later want both): a reload starts. */
  reloading(): void;
  /** STOPPING=1: shutdown starts. Later ready() and reloading() calls are ignored. */
  stopping(): void;
  /** A STATUS= line alone. */
  status(text: string): void;
  /** Stops the watchdog pings. */
  close(): void;
}

/** The variables systemd sets for a notify service (see sd_notify(3), sd_watchdog_enabled(3)). */
export const NOTIFY_VARIABLES = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

type NotifyEnvironment = Partial<Record<(typeof NOTIFY_VARIABLES)[number], string>>;

/**
 * How often to ping the watchdog, in milliseconds: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * advises; undefined when there is no watchdog, or it watches another process (WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NotifyEnvironment, pid: number = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** CLOCK_MONOTONIC in microseconds (libuv's hrtime reads CLOCK_MONOTONIC on Linux). */
function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

const sendWithAddon: NotifySend = (socketPath, message) => callNative(() => loadNativeAddon().notify(socketPath, message));

/** A STATUS= value is one line. */
const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ');

export interface NotifierOptions {
  /** Defaults to the native addon. */
  send?: NotifySend;
  /** Defaults to process.pid (compared with WATCHDOG_PID). */
  pid?: number;
  /** Defaults to CLOCK_MONOTONIC. */
  monotonicUsec?: () => bigint;
}

export class SystemdNotifier implements ServiceNotifier {
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private warned = false;

  private constructor(
    private readonly socketPath: string | undefined,
    private readonly logger: Logger,
    private readonly send: NotifySend,
    private readonly clock: () => bigint,
  ) {}

  /**
   * Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then removes them from `env` so the
   * commands the daemon runs (nft, iptables, conntrack) do not inherit them; starts the watchdog
   * pings at once (startup counts too) when the unit has WatchdogSec=.
   */
  static fromEnvironment(logger: Logger, env: NotifyEnvironment = process.env, options: NotifierOptions = {}): SystemdNotifier {
    const socketPath = env.NOTIFY_SOCKET || undefined;
    const interval = socketPath ? watchdogIntervalMs(env, options.pid) : undefined;
    for (const name of NOTIFY_VARIABLES) delete env[name];
    const notifier = new SystemdNotifier(socketPath, logger, options.send ?? sendWithAddon, options.monotonicUsec ?? monotonicUsec);
    if (socketPath) logger.debug({ notifySocket: socketPath, watchdogMs: interval ?? null }, 'systemd notifications on');
    if (interval !== undefined) notifier.startWatchdog(interval);
    return notifier;
  }

  /** True when there is a socket to notify. */
  get enabled(): boolean {
    return this.socketPath !== undefined;
  }

  ready(status: string): void {
    if (!this.stopped) this.notify(`READY=1\nSTATUS=${oneLine(status)}`);
  }

  reloading(): void {
    if (!this.stopped) this.notify(`RELOADING=1\nMONOTONIC_USEC=${this.clock()}\nSTATUS=reloading the config`);
  }

  stopping(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.notify('STOPPING=1\nSTATUS=stopping');
  }

  status(text: string): void {
    this.notify(`STATUS=${oneLine(text)}`);
  }

  close(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** WATCHDOG=1 every `intervalMs` from this thread's event loop: a wedged loop stops the pings. */
  private startWatchdog(intervalMs: number): void {
    this.notify('WATCHDOG=1');
    this.watchdog = setInterval(() => this.notify('WATCHDOG=1'), intervalMs);
    this.watchdog.unref();
  }

  /** Sends one message; a failure is logged once and never thrown (systemd going away must not stop the daemon). */
  private notify(message: string): void {
    if (this.socketPath === undefined) return;
    try {
      this.send(this.socketPath, message);
    } catch (err) {
      if (this.warned) return;
      this.warned = true;
      this.logger.warn(
        { ...errorFields(err), notifySocket: this.socketPath, message: message.split('\n')[0] },
        'systemd notification failed (later failures are not logged)',
      );
    }
  }
}
