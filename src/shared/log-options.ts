/** The log levels and time formats the CLI accepts: constants apart from the logger, so `--help` loads no logger. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** How `time` is written: epoch milliseconds (pino's default) or ISO 8601 in UTC, as log shippers and fail2ban's file backend read it. */
export const LOG_TIMES = ['epoch', 'iso'] as const;
export type LogTime = (typeof LOG_TIMES)[number];
