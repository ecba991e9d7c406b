/**
 * Opens the step-1 capture the firewall was installed for (NFQUEUE or NFLOG) behind one
 * shape: batches of packets in, every NFQUEUE packet dropped after inspection, drop
 * counters out. Dropping is the only verdict step 1 ever gives.
 */
import type { CaptureKind } from '../shared/kinds.js';
import type { PacketBatch } from '../native/packet-batch.js';
import { NflogSocket } from './nflog.js';
import { NfqueueSocket } from './nfqueue.js';

export interface CaptureDrops {
  /** Packets the kernel dropped because the queue was full. */
  kernel: number;
  /** Packets lost because the socket buffer overflowed (ENOBUFS). */
  enobufs: number;
}

export interface Step1Capture {
  readonly kind: CaptureKind;
  /** The queue number or log group. */
  readonly number: number;
  drops(): CaptureDrops;
  close(): void;
}

export interface Step1CaptureOptions {
  kind: CaptureKind;
  queueNum: number;
  nflogGroup: number;
  /** Called once per batch; must not throw (errors go to onError). */
  onBatch(batch: PacketBatch): void;
  onError: (err: unknown) => void;
}

/** Enough for one knock request plus headers (the inspector caps requests at 2 KiB). */
const COPY_RANGE = 4096;

export function openStep1Capture(options: Step1CaptureOptions): Step1Capture {
  if (options.kind === 'nfqueue') {
    const queue = NfqueueSocket.open(
      { queue: options.queueNum, copyRange: COPY_RANGE, maxLen: 4096 },
      (batch, socket) => {
        // The error is reported here, not rethrown: NfqueueSocket would drop the batch a second time.
        try {
          options.onBatch(batch);
        } catch (err) {
          options.onError(err);
        }
        socket.dropBatch(batch);
      },
      options.onError,
    );
    return {
      kind: 'nfqueue',
      number: options.queueNum,
      drops: () => ({ kernel: queue.kernelCounters()?.queueDropped ?? 0, enobufs: queue.stats().enobufs }),
      close: () => queue.close(),
    };
  }
  const log = NflogSocket.open({ group: options.nflogGroup, copyRange: COPY_RANGE }, (batch) => {
    try {
      options.onBatch(batch);
    } catch (err) {
      options.onError(err);
    }
  });
  return {
    kind: 'nflog',
    number: options.nflogGroup,
    drops: () => ({ kernel: 0, enobufs: log.stats().enobufs }),
    close: () => log.close(),
  };
}
