/**
 * What the kernel's step-1 prefilter would have done with each packet `replay` and `watch`
 * judge: they still show every decision, and mark (and count) the packets the kernel would
 * have dropped before the daemon ever saw them.
 */
import type { Config } from '../../config/types.js';
import { TcpSegmentView, decodeTcpPacket } from '../../packet/decode.js';
import { ipPacketOf } from '../../packet/link.js';
import { prefilterPasses, prefilterPrefix, type PrefilterMode } from '../../step1/prefilter.js';

export class PrefilterJudge {
  /** Step-1 packets the kernel prefilter would have dropped. */
  dropped = 0;
  private readonly view = new TcpSegmentView();
  private readonly prefix: Buffer;
  private readonly mode: PrefilterMode;

  constructor(config: Config) {
    this.prefix = prefilterPrefix(config.global.step1Path);
    this.mode = { handshake: config.global.step1Handshake, reply: config.global.step1Reply };
  }

  /**
   * True when the kernel would drop this frame (one the inspector judged) before the capture.
   * Frames that do not decode as TCP are left to the other rules: not the prefilter's doing.
   */
  drops(linkType: number, frame: Buffer): boolean {
    const packet = ipPacketOf(linkType, frame);
    if (packet === undefined || decodeTcpPacket(packet, this.view) !== undefined) return false;
    if (prefilterPasses(this.view, this.prefix, this.mode)) return false;
    this.dropped++;
    return true;
  }
}
