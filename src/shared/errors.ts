/**
 * Exit codes of `run` (and `check`) for failures fixed outside the command line and the config's
 * values: stable, so that scripts and systemd (`RestartPreventExitStatus=`) can tell them apart.
 * Listed in docs/manual/exit-codes.md; 3 to 9 are `knock`'s own.
 */
export const SetupExitCode = {
  /** The TLS certificate or key cannot be used (unreadable, swapped, not a pair, expired, ...). */
  tlsFiles: 10,
  /** The process lacks a capability it needs (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE). */
  missingCapability: 11,
  /** `run --trial`: nobody ran `knock-port confirm` in time; the gate was removed on purpose. */
  trialNotConfirmed: 12,
} as const;

/** What each SetupExitCode means, for `run --help` and the man page. */
export const SETUP_EXIT_MEANINGS: Record<(typeof SetupExitCode)[keyof typeof SetupExitCode], string> = {
  10: 'the TLS certificate or key cannot be used (run, and check when it checks them); nothing is installed',
  11: 'run lacks a capability (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE); nothing is installed',
  12: 'run --trial: no knock-port confirm came in time, and the gate was removed on purpose',
};

/** Base class for errors whose message is meant for the operator, as is. */
export class KnockPortError extends Error {
  /** The command's exit code when this error ends it; undefined: 1, a runtime failure. */
  readonly exitCode?: number;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The one-line message of any thrown value: what an operator-facing text or reply quotes. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** What a log line carries about a caught error (`logger.error({ ...errorFields(err) }, ...)`). */
export interface ErrorFields {
  err: string;
  /** Only for an unexpected error: where it was thrown. */
  stack?: string;
}

/**
 * Log fields for a caught error: its message, and for an unexpected one (anything but a
 * KnockPortError, whose message is written for the operator) also its stack, so that a bug's
 * one log line says where it happened. Log each error once, where it is handled.
 */
export function errorFields(err: unknown): ErrorFields {
  const fields: ErrorFields = { err: describeError(err) };
  if (err instanceof Error && !(err instanceof KnockPortError) && err.stack) fields.stack = err.stack;
  return fields;
}
