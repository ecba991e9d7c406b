import { KnockPortError } from '../errors.js';

/** The control socket cannot be set up (path taken, another daemon, permissions). */
export class ControlSocketError extends KnockPortError {}

/** The CLI cannot reach the daemon, or what answered is not a knock-port daemon. */
export class ControlUnreachableError extends KnockPortError {}

/** The daemon answered, but with an error (its message is for the operator). */
export class ControlCommandError extends KnockPortError {}

export class UnknownAppError extends KnockPortError {}
