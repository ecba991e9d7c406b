/**
 * The daemon's logger (pino, JSON to stdout) with secret-bearing fields redacted, and the log
 * levels the CLI accepts. Under systemd with stdout on the journal, each line starts with its
 * syslog priority (`<4>{...}`), which journald strips and records, so `journalctl -p warning` works.
 */
import { fstatSync } from 'node:fs';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type { LogTime } from './log-options.js';

export type { Logger };
export { LOG_LEVELS, LOG_TIMES, type LogTime } from './log-options.js';

/** The sd-daemon(3) prefix per pino level: fatal crit, error err, warn warning, info info, debug and trace debug. */
export const JOURNAL_PRIORITIES = { trace: 7, debug: 7, info: 6, warn: 4, error: 3, fatal: 2 } as const;

/**
 * True when `fd` is the journal stream systemd connected: JOURNAL_STREAM holds its `device:inode`
 * (systemd.exec(5)). Compared with the fd itself, so output redirected elsewhere stays plain JSON.
 */
export function logsGoToJournal(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const expected = env.JOURNAL_STREAM;
  if (!expected) return false;
  try {
    const stat = fstatSync(fd, { bigint: true });
    return expected === `${stat.dev}:${stat.ino}`;
  } catch {
    return false;
  }
}

/** A stream writing each line to `destination` behind a fixed prefix. */
function prefixed(prefix: string, destination: pino.DestinationStream): pino.DestinationStream {
  const flushable = destination as pino.DestinationStream & { flushSync?: () => void };
  return {
    write: (line: string) => destination.write(prefix + line),
    // multistream's flushSync calls each stream's; pino's exit handler flushes the destination itself.
    flushSync: () => flushable.flushSync?.(),
  } as pino.DestinationStream;
}

/** One stream per level, each line going only to its own level's stream (dedupe). */
function journalStreams(destination: pino.DestinationStream): pino.MultiStreamRes {
  const streams = Object.entries(JOURNAL_PRIORITIES).map(([level, priority]) => ({
    level: level as pino.Level,
    stream: prefixed(`<${priority}>`, destination),
  }));
  return pino.multistream(streams, { dedupe: true });
}

export interface LoggerOptions {
  /** Prefix each line with its syslog priority; defaults to whether stdout is the journal (JOURNAL_STREAM). */
  journal?: boolean;
  /** Defaults to epoch. */
  time?: LogTime;
}

/**
 * JSON logs to stdout. Fields that could carry a secret are redacted by name as a
 * second line of defence; callers must still never log request bodies or keys.
 */
export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream, loggerOptions: LoggerOptions = {}): Logger {
  const options = {
    level,
    base: { name: 'knock-port' },
    timestamp: loggerOptions.time === 'iso' ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
    redact: {
      paths: ['access_key', 'accessKey', 'key', 'token', 'otp', 'secret', 'body', '*.access_key', '*.token', '*.otp', '*.secret'],
      censor: '[redacted]',
    },
  };
  const journal = loggerOptions.journal ?? (destination === undefined && logsGoToJournal(process.env, process.stdout.fd ?? 1));
  if (!journal) return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
  // The same destination pino uses by default (stdout, flushed synchronously on exit), behind the prefixes.
  const out = (destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: process.stdout.fd ?? 1 });
  return pino(options, journalStreams(out));
}
