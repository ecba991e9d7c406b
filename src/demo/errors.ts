/** The demo's one error type: its message tells the user what failed or what to do. */
import { KnockPortError } from '../shared/errors.js';

/** The demo cannot run here, or one of its steps did not behave as it should. */
export class DemoError extends KnockPortError {}
