/**
 * The step-1 capture over a stand-in native NFQUEUE: every packet of a batch gets exactly one
 * drop verdict, also when the inspector throws halfway through the batch.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PACKET_FIELDS, type PacketBatch } from '../../../src/native/packet-batch.js';

type BatchCallback = (data: Buffer, meta: Uint32Array, count: number) => void;

const queues: FakeQueue[] = [];

class FakeQueue {
  readonly verdicts: number[] = [];
  constructor(
    readonly queue: number,
    readonly options: unknown,
    readonly onBatch: BatchCallback,
  ) {
    queues.push(this);
  }
  drop(ids: Uint32Array, count = ids.length): void {
    this.verdicts.push(...ids.subarray(0, count));
  }
  flush(): void {}
  stats() {
    return { received: 0, batches: 0, enobufs: 0, verdicts: 0, verdictMessages: 0, batchVerdicts: 0 };
  }
  close(): void {}
}

vi.mock('../../../src/native/addon.js', () => ({
  loadNativeAddon: () => ({ NfQueue: FakeQueue }),
  callNative: <T>(call: () => T): T => call(),
}));

const { openStep1Capture } = await import('../../../src/capture/step1-capture.js');

/** Hands the queue one batch of packets with these ids (one byte each). */
function deliver(queue: FakeQueue, ids: number[]): void {
  const meta = new Uint32Array(ids.length * PACKET_FIELDS);
  ids.forEach((id, i) => meta.set([id, i, 1], i * PACKET_FIELDS));
  queue.onBatch(Buffer.alloc(ids.length), meta, ids.length);
}

/** The NFQUEUE step-1 capture on queue 3, over the stand-in queue. */
function openQueue(onBatch: (batch: PacketBatch) => void, onError: (err: unknown) => void) {
  const capture = openStep1Capture({ kind: 'nfqueue', queueNum: 3, nflogGroup: 0, onBatch, onError });
  return { capture, queue: queues[0]! };
}

afterEach(() => {
  queues.length = 0;
});

describe('openStep1Capture (nfqueue)', () => {
  it('drops every packet of a batch once after inspecting it', () => {
    const inspected: number[] = [];
    const { capture, queue } = openQueue(
      (batch) => inspected.push(batch.count),
      () => expect.fail('no error expected'),
    );
    deliver(queue, [11, 12, 13]);
    expect(inspected).toEqual([3]);
    expect(queue.verdicts).toEqual([11, 12, 13]);
    capture.close();
  });

  it('gives one drop verdict per packet when the inspector throws, and reports the error once', () => {
    const errors: unknown[] = [];
    const { capture, queue } = openQueue(
      () => {
        throw new Error('inspector bug');
      },
      (err) => errors.push(err),
    );
    deliver(queue, [21, 22]);
    expect(queue.verdicts).toEqual([21, 22]);
    expect(errors).toHaveLength(1);
    capture.close();
  });
});
