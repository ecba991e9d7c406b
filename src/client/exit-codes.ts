/**
 * Exit codes, stable so that scripts can branch on them. Every command exits 0 on success, 1 on
 * a runtime failure and 2 on a usage error; `knock` adds its own from 3 up. Listed in
 * `knock-port knock --help` and in docs/manual/exit-codes.md; keep the three in step.
 */
export const ExitCode = {
  ok: 0,
  /** A runtime failure: the command line was fine, the work failed. */
  failed: 1,
  /** A usage error: unknown option, bad or missing argument, invalid combination (commander's convention). */
  usage: 2,
} as const;

export const KnockExitCode = {
  ...ExitCode,
  step1Unreachable: 3,
  step2Unreachable: 4,
  forbidden: 5,
  tokenRequired: 6,
  rateLimited: 7,
  serviceNotOpen: 8,
  tlsFailed: 9,
} as const;

export type KnockExitCode = (typeof KnockExitCode)[keyof typeof KnockExitCode];

/** What each code of `knock` means; read by its `--help` and its man page. */
export const KNOCK_EXIT_MEANINGS: Record<KnockExitCode, string> = {
  0: 'knock accepted (and, with --wait, the service port is open)',
  1: 'other failure (unexpected HTTP status, local error)',
  2: 'usage error (unknown option, bad or missing argument, invalid combination), as for every command',
  3: 'step 1: could not connect to the step-1 port (no SYN-ACK, refused, or name not resolved)',
  4: 'step 2: HTTPS port never opened (wrong step-1 path/app/key/otp, or blocked on the way)',
  5: 'step 2: 403 refused (wrong step-2 path, app, key or token, or no step-2 window: step 1 refused, too long ago or for another app/user)',
  6: 'a step-2 TOTP token is needed (--totp, or a 401 from an older gateway) and none was given (no terminal to ask on)',
  7: 'step 2: 429 rate limited, try again in a minute',
  8: 'the service port did not open within --wait seconds',
  9: 'step 2: TLS failed (certificate not trusted: use --ca FILE, or --insecure)',
};

/** The exit-code table as shown at the end of `knock-port knock --help`. */
export function exitCodeHelp(): string {
  const lines = Object.entries(KNOCK_EXIT_MEANINGS).map(([code, meaning]) => `  ${code.padStart(2)}  ${meaning}`);
  return `\nExit codes:\n${lines.join('\n')}\n`;
}
