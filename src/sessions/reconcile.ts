/**
 * On start, the saved session records merged with the grants the kernel still holds: the kernel
 * decides what is live, so a record never outlives its grant nor makes it look longer.
 */
import type { Grant } from '../firewall/types.js';
import { canonicalIp } from '../shared/ip.js';
import type { SessionRecord } from './record.js';

export interface ReconcileResult {
  records: SessionRecord[];
  /** Records from the state file that expired, or whose kernel grant is gone (expired or removed). */
  dropped: number;
  /** Kernel grants with no record: kept, listed, but never attributed to a user. */
  unattributed: number;
}

/** Kernel grants are keyed like records: step-2 windows per IP, service grants per IP and app. */
function grantKey(step: Grant['kind'], ip: string, app: string | null | undefined): string {
  return step === 'step2' ? `step2|${ip}` : `service|${ip}|${app ?? ''}`;
}

/**
 * Merges the state file with what the kernel holds. A record lives only while both its own
 * expiry and the kernel's grant do: a record whose grant is not live in the kernel, or whose
 * own expiry has passed, is dropped, and a kept record ends at the earlier of the two. The
 * kernel keeps one grant per key (one step-2 window per IP), so another user's longer window
 * on the same address must not bring an expired record back or stretch a shorter one.
 */
export function reconcile(saved: readonly SessionRecord[], kernel: readonly Grant[], now: number): ReconcileResult {
  const live = new Map<string, { grant: Grant; ip: string; claimed: boolean }>();
  for (const grant of kernel) {
    const ip = canonicalIp(grant.address);
    if (ip !== undefined) live.set(grantKey(grant.kind, ip, grant.app), { grant, ip, claimed: false });
  }
  const records: SessionRecord[] = [];
  let dropped = 0;
  for (const record of saved) {
    const match = live.get(grantKey(record.step, record.ip, record.app));
    if (!match || record.expiresAt <= now) {
      dropped++;
      continue;
    }
    match.claimed = true;
    records.push({ ...record, expiresAt: Math.min(record.expiresAt, now + match.grant.expiresInSeconds * 1000) });
  }
  let unattributed = 0;
  for (const { grant, ip, claimed } of live.values()) {
    if (claimed) continue;
    unattributed++;
    records.push({ ip, app: grant.app ?? null, user: null, step: grant.kind, expiresAt: now + grant.expiresInSeconds * 1000 });
  }
  return { records, dropped, unattributed };
}
