/**
 * The cookie source for replay and watch: another daemon's secret cannot be recomputed, so a
 * data segment counts as verified when the traffic held the SYN-ACK it acknowledges (same
 * 4-tuple, `ack - 1` equal to that SYN-ACK's ISN) and it starts right after the handshake
 * (`seq` equal to the SYN-ACK's ack), exactly the segments a keyed cookie verifies.
 */
import type { TcpSegmentView } from '../packet/decode.js';
import { BoundedMap } from '../shared/bounded-map.js';
import type { CookieSource } from './cookie.js';

/** SYN-ACKs remembered; a flood of them must not grow memory without bound. */
export const OBSERVED_SYN_ACKS_MAX = 1_000_000;

export class ObservedCookieSource implements CookieSource {
  /** Flow → the SYN-ACK's sequence and acknowledgment numbers. */
  private readonly synAckByFlow = new BoundedMap<string, { seq: number; ack: number }>(OBSERVED_SYN_ACKS_MAX);

  /** Records a SYN-ACK sent by the server (its source is the step-1 side). */
  observeSynAck(synAck: TcpSegmentView): void {
    const key = flowKey(synAck, synAck.dstOffset, synAck.dport, synAck.srcOffset, synAck.sport);
    this.synAckByFlow.set(key, { seq: synAck.seq, ack: synAck.ack });
  }

  /** Never sent anywhere in replay or watch; any value will do. */
  issue(): number {
    return 0;
  }

  verify(segment: TcpSegmentView): boolean {
    const synAck = this.synAckByFlow.get(flowKey(segment, segment.srcOffset, segment.sport, segment.dstOffset, segment.dport));
    return synAck !== undefined && synAck.seq === (segment.ack - 1) >>> 0 && synAck.ack === segment.seq;
  }
}

/** Client address and port, then server address and port. */
function flowKey(view: TcpSegmentView, clientOffset: number, clientPort: number, serverOffset: number, serverPort: number): string {
  const length = view.addressLength;
  return `${view.packet.toString('hex', clientOffset, clientOffset + length)}/${clientPort}/${view.packet.toString('hex', serverOffset, serverOffset + length)}/${serverPort}`;
}
