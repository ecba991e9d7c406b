/** The control-socket commands' one call: a request to the daemon that `--socket` or `-c` names. */
import { callDaemon, type AnswerField, type AnswerOf } from '../../control/client.js';
import type { ControlRequest } from '../../control/protocol.js';
import type { ControlSocketOptions } from '../options.js';
import { resolveControlSocket } from '../resolve-options.js';

/** The answer's `field`, or the daemon's error as a ControlCommandError. */
export function askDaemon<F extends AnswerField>(options: ControlSocketOptions, request: ControlRequest, field: F): Promise<AnswerOf<F>> {
  return callDaemon(resolveControlSocket(options), request, field);
}
