/**
 * The packets of one NFQUEUE/NFLOG wake-up as the native addon hands them over (native/common.h,
 * PacketBatch): one Buffer of payloads and one Uint32Array of (id, offset, length) per packet.
 */

/** Uint32 fields per packet in a batch's `meta` array (native/common.h, PacketBatch::kFields). */
export const PACKET_FIELDS = 3;
const enum Field {
  Id = 0,
  Offset,
  Length,
}

/** Accessors read in place, so a batch costs two allocations. */
export class PacketBatch {
  constructor(
    readonly data: Buffer,
    readonly meta: Uint32Array,
    readonly count: number,
  ) {}

  private field(index: number, field: Field): number {
    if (index < 0 || index >= this.count) throw new RangeError(`packet ${index} is not in this batch of ${this.count}`);
    return this.meta[index * PACKET_FIELDS + field]!;
  }

  /** The NFQUEUE packet id (the verdict key); 0 for NFLOG. */
  id(index: number): number {
    return this.field(index, Field.Id);
  }

  /** The packet's bytes from the IP header on, up to the copy range (a view into the batch buffer, not a copy). */
  payload(index: number): Buffer {
    const offset = this.field(index, Field.Offset);
    return this.data.subarray(offset, offset + this.field(index, Field.Length));
  }

  /** Every packet id in the batch, in arrival order, ready for a verdict call. */
  ids(): Uint32Array {
    const ids = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) ids[i] = this.meta[i * PACKET_FIELDS + Field.Id]!;
    return ids;
  }
}
