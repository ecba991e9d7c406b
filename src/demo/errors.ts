import { KnockPortError } from '../errors.js';

/** The demo cannot run here, or one of its steps did not behave as it should. */
export class DemoError extends KnockPortError {}
