/**
 * Names shared by every layer: how step-1 packets reach the daemon, what a grant opens, and the
 * step-2 window step 1 earns. Kept here so that the pure core and the I/O edges agree on them
 * without importing each other.
 */

/** One of a knock's two steps; a user's key for it is `${step}Key`. */
export type KnockStep = 'step1' | 'step2';

/** How step-1 packets reach the daemon. */
export type CaptureKind = 'nfqueue' | 'nflog';

/**
 * What a grant opens: `step2` the HTTPS port (earned in step 1), `service` an app's port or
 * forward (earned in step 2). The same word names the kernel set, the session record's step
 * and the ipset.
 */
export type GrantKind = 'step2' | 'service';

/** A step-2 window: the (app, user) that passed step 1 from an IP, and until when. */
export interface Step2Window {
  app: string;
  user: string;
  expiresAt: number;
}
