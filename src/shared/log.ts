/**
 * The daemon's logger (pino, JSON to stdout) with secret-bearing fields redacted, and the log
 * levels the CLI accepts.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * JSON logs to stdout. Fields that could carry a secret are redacted by name as a
 * second line of defence; callers must still never log request bodies or keys.
 */
export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { name: 'knock-port' },
    redact: {
      paths: ['access_key', 'accessKey', 'key', 'token', 'otp', 'secret', 'body', '*.access_key', '*.token', '*.otp', '*.secret'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
