/** Errors of the control socket, daemon side and CLI side; their messages are for the operator. */
import { KnockPortError } from '../shared/errors.js';

/** The control socket cannot be set up (path taken, another daemon, permissions). */
export class ControlSocketError extends KnockPortError {}

/** The CLI cannot reach the daemon, or what answered is not a knock-port daemon. */
export class ControlUnreachableError extends KnockPortError {}

/** The daemon answered, but with an error (its message is for the operator). */
export class ControlCommandError extends KnockPortError {}

export class UnknownAppError extends KnockPortError {}

/** A reload asked over the control socket that the daemon refused: it keeps the running config. */
export class ReloadRefusedError extends KnockPortError {}

/** `confirm` asked of a daemon with no trial waiting (started without --trial, or confirmed already). */
export class NotInTrialError extends KnockPortError {}
