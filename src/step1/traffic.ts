/**
 * Step 1 over captured traffic (replay of a file, or `watch` on an interface): learns the
 * server's SYN-ACKs, and passes every packet headed to the step-1 port through the same
 * Inspector, on the same step-1 tables (shared-state.ts), as the daemon, at the capture's own clock.
 */
import type { Config } from '../config/types.js';
import { TCP_ACK, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../packet/decode.js';
import { ipPacketOf } from '../packet/link.js';
import type { Step1Decision } from './decision.js';
import { Inspector } from './inspector.js';
import { ObservedCookieSource } from './observed-cookie.js';

export class TrafficInspector {
  readonly inspector: Inspector;
  /** Frames that were not step-1 traffic (other ports, non-IP, the server's own packets). */
  skipped = 0;
  private readonly cookies = new ObservedCookieSource();
  private readonly view = new TcpSegmentView();
  private timeMs = 0;

  constructor(private readonly config: Config) {
    this.inspector = new Inspector(config, { cookie: this.cookies, now: () => this.timeMs });
  }

  /** The decision for one captured frame, or undefined when it is not step-1 traffic. */
  feed(linkType: number, frame: Buffer, timeMs: number): Step1Decision | undefined {
    this.timeMs = timeMs;
    const packet = ipPacketOf(linkType, frame);
    if (packet === undefined) return this.skip();
    const failure = decodeTcpPacket(packet, this.view);
    if (failure === 'not-tcp') return this.skip();
    // Malformed packets carry no trustworthy port: the inspector reports them all.
    if (failure === undefined && this.view.dport !== this.config.global.step1Port) {
      const synAck = TCP_SYN | TCP_ACK;
      if (this.view.sport === this.config.global.step1Port && (this.view.flags & synAck) === synAck) this.cookies.observeSynAck(this.view);
      return this.skip();
    }
    return this.inspector.inspect(packet);
  }

  private skip(): undefined {
    this.skipped++;
    return undefined;
  }
}
