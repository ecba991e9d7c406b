import { describe, expect, it } from 'vitest';
import { describeError, errorFields, KnockPortError } from '../../../src/shared/errors.js';
import { createLogger } from '../../../src/shared/log.js';
import { Writable } from 'node:stream';

class OperatorError extends KnockPortError {}

/** A bug as the daemon meets one: a TypeError thrown from inside a function of this file. */
function buggy(): never {
  const missing = undefined as unknown as { field: string };
  return missing.field as never;
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** The JSON lines a real logger writes for `fields`. */
function logged(fields: object): Record<string, unknown> {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  createLogger('info', sink).error(fields, 'something failed');
  return JSON.parse(chunks.join('')) as Record<string, unknown>;
}

describe('errors in logs', () => {
  it('logs an unexpected error with the stack that says where it was thrown', () => {
    const line = logged(errorFields(caught(buggy)));
    expect(line.err).toMatch(/Cannot read properties of undefined/);
    expect(line.stack).toMatch(/TypeError/);
    expect(line.stack).toMatch(/at buggy \(.*errors\.test\.ts:\d+:\d+\)/);
  });

  it('logs an operator error as its one-line message, without a stack', () => {
    const line = logged(errorFields(new OperatorError('the control socket /run/x is in use: stop the other daemon')));
    expect(line.err).toBe('the control socket /run/x is in use: stop the other daemon');
    expect(line).not.toHaveProperty('stack');
  });

  it('describes any thrown value in one line for operator-facing text', () => {
    expect(describeError(caught(buggy))).not.toContain('\n');
    expect(describeError(new OperatorError('refused'))).toBe('refused');
    expect(describeError('a string')).toBe('a string');
  });
});
