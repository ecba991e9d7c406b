/**
 * NFQUEUE capture: packets a firewall rule queues (`-j NFQUEUE --queue-num N`) arrive
 * here in batches; every packet must get a verdict. Closing the queue (or the process
 * dying) makes the kernel drop what waits and every later packet: it fails closed.
 */
import { readFileSync } from 'node:fs';
import { callNative, loadNativeAddon, type NativeNfqueue, type NativeNfqueueStats } from '../native/addon.js';
import { PacketBatch } from '../native/packet-batch.js';

export interface NfqueueOptions {
  queue: number;
  /** Bytes copied from each packet, from the IP header on (default 65535). */
  copyRange?: number;
  /** Packets the kernel holds waiting for a verdict before it drops new ones (default 1024). */
  maxLen?: number;
  /** Socket receive buffer in bytes (default 8 MiB). */
  receiveBuffer?: number;
  /** Most packets handed to one onBatch call (default 256). */
  maxBatch?: number;
}

export type NfqueueStats = NativeNfqueueStats;

export type NfqueueBatchHandler = (batch: PacketBatch, queue: NfqueueSocket) => void;

export class NfqueueSocket {
  private constructor(
    private readonly handle: NativeNfqueue,
    readonly queue: number,
  ) {}

  /**
   * Binds the queue in this process's network namespace. `onBatch` runs once per batch
   * and must give every packet a verdict (now or later). If it throws, the whole batch
   * is dropped and the error goes to `onError` (default: rethrown as uncaught).
   */
  static open(options: NfqueueOptions, onBatch: NfqueueBatchHandler, onError?: (err: unknown) => void): NfqueueSocket {
    const addon = loadNativeAddon();
    let socket: NfqueueSocket | undefined;
    const handle = callNative(
      () =>
        new addon.NfQueue(options.queue, options, (data, meta, count) => {
          const batch = new PacketBatch(data, meta, count);
          try {
            onBatch(batch, socket!);
          } catch (err) {
            socket?.dropBatch(batch);
            if (!onError) throw err;
            onError(err);
          }
        }),
    );
    socket = new NfqueueSocket(handle, options.queue);
    // Packets that arrived while binding wait in the addon; hand them over once `socket` is set.
    setImmediate(() => handle.flush());
    return socket;
  }

  /**
   * Drops the first `count` packets of `ids`, the only verdict step 1 gives: it never lets a
   * packet through. When they are all the packets still held, one batch-verdict message covers
   * them; otherwise one message goes per packet.
   */
  drop(ids: Uint32Array, count = ids.length): void {
    callNative(() => this.handle.drop(ids, count));
  }

  /** Drops every packet of a batch. */
  dropBatch(batch: PacketBatch): void {
    this.drop(batch.ids());
  }

  stats(): NfqueueStats {
    return this.handle.stats();
  }

  /** The kernel's counters for this queue, or undefined if the kernel does not list it. */
  kernelCounters(procText?: string): KernelQueueCounters | undefined {
    return readKernelQueueCounters(procText).find((c) => c.queue === this.queue);
  }

  close(): void {
    this.handle.close();
  }
}

/** One line of /proc/net/netfilter/nfnetlink_queue. */
export interface KernelQueueCounters {
  queue: number;
  portId: number;
  /** Packets waiting for a verdict now. */
  waiting: number;
  copyMode: number;
  copyRange: number;
  /** Dropped because the queue was full (maxLen reached). */
  queueDropped: number;
  /** Dropped because the socket could not take them (receive buffer full: ENOBUFS). */
  userDropped: number;
  lastId: number;
}

const PROC_QUEUE = '/proc/net/netfilter/nfnetlink_queue';

export function parseKernelQueueCounters(text: string): KernelQueueCounters[] {
  const counters: KernelQueueCounters[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/).map(Number);
    if (fields.length < 8 || fields.some((n) => !Number.isFinite(n))) continue;
    const [queue, portId, waiting, copyMode, copyRange, queueDropped, userDropped, lastId] = fields as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    counters.push({ queue, portId, waiting, copyMode, copyRange, queueDropped, userDropped, lastId });
  }
  return counters;
}

/** The kernel's per-queue counters in this network namespace (empty when no queue is bound). */
export function readKernelQueueCounters(procText?: string): KernelQueueCounters[] {
  if (procText !== undefined) return parseKernelQueueCounters(procText);
  try {
    return parseKernelQueueCounters(readFileSync(PROC_QUEUE, 'utf8'));
  } catch {
    return [];
  }
}
