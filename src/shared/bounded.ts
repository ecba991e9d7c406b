/** Waiting for a promise, but not for ever: the store's commands and step 2's wait for a code claim. */

export class TimeoutError extends Error {}

/** `promise`, or a TimeoutError after `ms`. The operation itself is not cancelled. */
export function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
