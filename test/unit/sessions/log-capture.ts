import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../src/shared/log.js';

/** A real pino logger whose JSON lines are kept for assertions. */
export function capturedLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger(level, sink);
  const text = (): string => chunks.join('');
  const lines = (): Array<Record<string, unknown>> =>
    text()
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, text };
}
