/**
 * NFLOG capture: a rule such as `log group N drop` makes the kernel drop the packet and
 * send a copy here. No verdicts. The group flushes every packet at once (queue
 * threshold 1), so a SYN reaches the daemon without the kernel's ~1 s batching delay.
 */
import { callNative, loadNativeAddon, type NativeNflog, type NativeNflogStats } from '../native/addon.js';
import { PacketBatch } from '../native/packet-batch.js';

export interface NflogOptions {
  group: number;
  /** Bytes copied from each packet, from the IP header on (default 65535). */
  copyRange?: number;
  /** Socket receive buffer in bytes (default 8 MiB). At most 256 packets go to one onBatch call. */
  receiveBuffer?: number;
}

export type NflogStats = NativeNflogStats;

export class NflogSocket {
  private constructor(
    private readonly handle: NativeNflog,
    readonly group: number,
  ) {}

  /** Binds the group in this process's network namespace; `onBatch` runs once per batch. */
  static open(options: NflogOptions, onBatch: (batch: PacketBatch) => void): NflogSocket {
    const addon = loadNativeAddon();
    const handle = callNative(() => new addon.NfLog(options.group, options, (data, meta, count) => onBatch(new PacketBatch(data, meta, count))));
    return new NflogSocket(handle, options.group);
  }

  stats(): NflogStats {
    return this.handle.stats();
  }

  close(): void {
    this.handle.close();
  }
}
