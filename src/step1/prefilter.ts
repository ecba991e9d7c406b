/**
 * The in-kernel step-1 prefilter: the bytes every knock's TCP payload must start with, and
 * whether the kernel would pass a given segment. Both rulesets (nft and iptables) build their
 * match from `prefilterPrefix`, and `replay`/`watch` judge packets with `prefilterPasses`, so the
 * kernel, the tools and this module can never disagree about which bytes are compared.
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpSegmentView } from '../packet/decode.js';

/**
 * At most this many prefix bytes are compared in the kernel. What limits it: nft compares at
 * most 128 bits per payload expression and a rule holds at most 128 expressions
 * (NFT_RULE_MAXEXPRS), so 32 compares (64 expressions) of 16 bytes leave room for the rest of
 * the rule; iptables' u32 match holds 10 four-byte tests, so 512 bytes take 13 u32 matches in
 * one rule. A path longer than that is matched on its first bytes in the kernel; the daemon
 * still compares all of it.
 */
export const PREFILTER_MAX_BYTES = 512;

/** The request line's bytes after the target that the parser always requires (see http.ts). */
const AFTER_PATH = ' HTTP/1.';

/**
 * The bytes a knock's payload always begins with: `POST <path> HTTP/1.`, cut at
 * PREFILTER_MAX_BYTES. The parser takes the method exactly (`POST`, one space), the target
 * exactly (no query string, no case folding) and then ` HTTP/1.` and a `0` or `1`; the minor
 * version digit is left to the daemon. The path is printable ASCII (config rule), so each
 * character is one byte.
 */
export function prefilterPrefix(path: string): Buffer {
  const bytes = Buffer.from(`POST ${path}${AFTER_PATH}`, 'latin1');
  return bytes.subarray(0, Math.min(bytes.length, PREFILTER_MAX_BYTES));
}

/** Whether `payload[start, end)` begins with `prefix` (a shorter payload never does). */
export function payloadStartsWith(payload: Buffer, start: number, end: number, prefix: Buffer): boolean {
  if (end - start < prefix.length) return false;
  return payload.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0;
}

export interface PrefilterMode {
  /** With `cookie`, every SYN goes to the daemon (it answers with the cookie SYN-ACK). */
  handshake: 'cookie' | 'none';
  /** With `reset` there is no prefilter (see firewall rules: a kernel drop would be told apart). */
  reply: 'silent' | 'reset';
}

/**
 * Would the kernel hand this decoded segment (to the step-1 port) to the daemon, as far as the
 * prefilter goes? Only segments carrying data are judged: pure SYNs, ACKs, FINs and RSTs are
 * handled by the other step-1 rules as before (and the ones without data never pass them).
 * True for every segment when the prefilter is off (`step1_reply: reset`).
 */
export function prefilterPasses(view: TcpSegmentView, prefix: Buffer, mode: PrefilterMode): boolean {
  if (mode.reply === 'reset') return true;
  const flags = view.flags;
  if (view.payloadLength === 0) return true;
  const syn = (flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK)) === TCP_SYN;
  // In cookie mode a SYN's data is ignored and the SYN is answered: it always goes through.
  if (syn && mode.handshake === 'cookie') return true;
  const data = syn || (flags & (TCP_SYN | TCP_RST | TCP_ACK)) === TCP_ACK;
  // Other flag combinations with data were never handed to the daemon: not the prefilter's doing.
  if (!data) return true;
  return payloadStartsWith(view.packet, view.payloadOffset, view.end, prefix);
}
