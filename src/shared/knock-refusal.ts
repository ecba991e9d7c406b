/**
 * The one info line per refused knock, step 1 and step 2 alike, that fail2ban and CrowdSec read
 * (packaging/fail2ban/). It says who (address and port), at which step, and a class that never
 * tells a right key from a wrong one: every key, app, user, one-time code or lockout refusal is
 * `refused`. The detailed reason stays in the debug lines, for an operator debugging a client.
 */
import type { Logger } from './log.js';

export const REFUSED_KNOCK_MESSAGE = 'knock refused';

/** `malformed` and `rate-limited` are decided before any secret is looked at. */
export type RefusalClass = 'refused' | 'rate-limited' | 'malformed';

export interface RefusedKnock {
  ip: string;
  /** The client's source port; absent when the request came through a proxy. */
  port?: number;
  step: 1 | 2;
  class: RefusalClass;
}

export function logRefusedKnock(logger: Pick<Logger, 'info'>, knock: RefusedKnock): void {
  logger.info({ ip: knock.ip, ...(knock.port === undefined ? {} : { port: knock.port }), step: knock.step, class: knock.class }, REFUSED_KNOCK_MESSAGE);
}
