/** Base class for errors whose message is meant for the operator, as is. */
export class KnockPortError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Printed message for any thrown value, without a stack for our own errors. */
export function describeError(err: unknown): string {
  if (err instanceof KnockPortError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
