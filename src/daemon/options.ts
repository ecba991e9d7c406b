/** What `knock-port run` hands the daemon: the config, how to read it again, TLS, logging, systemd, the trial. */
import type { Config } from '../config/types.js';
import type { FirewallOptions } from '../firewall/index.js';
import type { Logger } from '../shared/log.js';
import type { CheckedTls } from '../step2/tls-files.js';
import type { ServiceNotifier } from '../systemd/notify.js';

export interface DaemonOptions {
  config: Config;
  /** Reads the config again (SIGHUP); throws on an invalid file. */
  reloadConfig: () => Config;
  /** The step-2 certificate and key, checked before start (step2/tls-files.ts). */
  tls: CheckedTls;
  /** Reads and checks them again on SIGHUP, under the config then running; throws when they fail a check. */
  reloadTls?: (config: Config) => CheckedTls;
  logger: Logger;
  /** Passed to the firewall backend (iptables variant, ...). */
  firewall?: Omit<FirewallOptions, 'nft' | 'type'>;
  /** Told READY=1 once the daemon serves, and RELOADING=1 / READY=1 around each reload (systemd). */
  notifier?: ServiceNotifier;
  /**
   * `run --trial SECONDS`: unless `knock-port confirm` comes within `seconds` of the daemon being
   * ready, the gate is removed (as `knock-port uninstall` removes it) and the daemon stops;
   * `ended` is then told, with the error when the removal failed.
   */
  trial?: { seconds: number; ended: (removalError?: unknown) => void };
}
