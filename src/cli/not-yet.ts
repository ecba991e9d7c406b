import { KnockPortError } from '../errors.js';

/** Thrown by commands whose implementation has not landed yet: say so, never pretend. */
export class NotAvailableYetError extends KnockPortError {
  constructor(command: string) {
    super(`'knock-port ${command}' is not available yet in this version.`);
  }
}
