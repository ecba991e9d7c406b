/**
 * Raw IPv4/IPv6 sender for packets built in TypeScript (SYN-ACKs, RSTs). Every packet
 * carries a firewall mark, so the output chain can tell the daemon's own packets apart.
 */
import { callNative, loadNativeAddon, type NativeRawSender, type RawFlushOutcome } from '../native/addon.js';

export type { RawFlushOutcome } from '../native/addon.js';

export interface RawSenderOptions {
  /** SO_MARK for every packet sent (0: none). */
  mark: number;
  /** Open the IPv6 socket (default true). */
  ipv6?: boolean;
}

export class RawPacketSender {
  private constructor(private readonly handle: NativeRawSender) {}

  static open(options: RawSenderOptions): RawPacketSender {
    const addon = loadNativeAddon();
    return new RawPacketSender(callNative(() => new addon.RawSender(options)));
  }

  /**
   * Copies a whole IP packet (header included; version and destination are read from it)
   * for the addon's sender thread, which gets it at the next flush() and sends a batch with
   * one sendmmsg per IP version: the kernel's transmit work stays off this thread. Failures
   * are reported by later flush() calls.
   */
  stage(packet: Uint8Array): void {
    callNative(() => this.handle.stage(packet));
  }

  /**
   * Hands the staged packets to the sender thread (without waiting for them). Returns what
   * happened, since the previous flush(), to the packets the thread has finished with.
   */
  flush(): RawFlushOutcome {
    return callNative(() => this.handle.flush());
  }

  /** Sends what is still staged or waiting, then closes the sockets. */
  close(): void {
    this.handle.close();
  }
}
