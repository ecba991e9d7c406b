/**
 * `run --trial`: the daemon's side of the trial clock (control/trial.ts). The clock starts once
 * everything serves, so the operator gets all of it to knock and confirm; unconfirmed, the gate is
 * removed exactly as `knock-port uninstall` removes it, deliberately opening every protected port.
 */
import { NotInTrialError } from '../control/errors.js';
import { NOT_IN_TRIAL, Trial } from '../control/trial.js';
import type { FirewallBackend } from '../firewall/types.js';
import { errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { ServiceNotifier } from '../systemd/notify.js';
import type { DaemonOptions } from './options.js';

/** Starts the clock; `rollBack` runs when it runs out, and `ended` is told how that went. */
export function startTrial(settings: NonNullable<DaemonOptions['trial']>, logger: Logger, rollBack: () => Promise<void>): Trial {
  const trial = new Trial(settings.seconds, () => {
    rollBack().then(
      () => settings.ended(),
      (err: unknown) => settings.ended(err),
    );
  });
  logger.warn(
    { trialSeconds: settings.seconds },
    `trial: the gate is removed again in ${settings.seconds} s (every protected port open, as after knock-port uninstall) unless knock-port confirm is run`,
  );
  return trial;
}

/** `knock-port confirm`: the gate stays. Throws when no trial waits. */
export function confirmTrial(trial: Trial | undefined, logger: Logger): number {
  if (!trial) throw new NotInTrialError(NOT_IN_TRIAL);
  const secondsLeft = trial.confirm();
  logger.info({ secondsLeft }, 'trial confirmed: the gate stays');
  return secondsLeft;
}

/**
 * The trial ran out unconfirmed: removes knock-port's rules and sets and its accept rules in host
 * chains. Returns the error when the removal failed (logged; the rules that remain stay closed).
 */
export async function removeGate(firewall: FirewallBackend, trialSeconds: number | undefined, logger: Logger, notifier?: ServiceNotifier): Promise<unknown> {
  logger.error(
    { trialSeconds },
    'trial not confirmed in time (knock-port confirm): removing the gate, every protected port is open again; exiting with code 12',
  );
  notifier?.status('trial not confirmed: gate removed, stopping');
  try {
    await firewall.uninstall();
    return undefined;
  } catch (err) {
    logger.error(errorFields(err), 'the gate could not be removed after the unconfirmed trial; remove it with knock-port uninstall');
    return err;
  }
}
