/** Errors the user fixes in the user-facing commands: a bad command line, a cancelled prompt. */
import { KnockPortError } from '../shared/errors.js';

/** A bad or missing option, or an unusable key file: the user must change the command line. */
export class KnockUsageError extends KnockPortError {}

/** The user cancelled a prompt (Ctrl-C or end of input). */
export class PromptCancelledError extends KnockPortError {
  constructor() {
    super('cancelled');
  }
}
