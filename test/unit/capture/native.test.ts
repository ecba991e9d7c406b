import { describe, expect, it } from 'vitest';
import { parseKernelQueueCounters } from '../../../src/capture/nfqueue.js';
import { CaptureError, callNative } from '../../../src/native/addon.js';
import { PACKET_FIELDS, PacketBatch } from '../../../src/native/packet-batch.js';
import { createNftRunner, LibnftablesRunner, NftError } from '../../../src/firewall/nft-runner.js';

/** Packs packets the way the addon does (native/common.cc, PacketBatch::Add). */
function pack(packets: Array<{ id: number; bytes: number[] }>): PacketBatch {
  const data = Buffer.from(packets.flatMap((p) => p.bytes));
  const meta = new Uint32Array(packets.length * PACKET_FIELDS);
  let offset = 0;
  packets.forEach((p, i) => {
    meta.set([p.id, offset, p.bytes.length], i * PACKET_FIELDS);
    offset += p.bytes.length;
  });
  return new PacketBatch(data, meta, packets.length);
}

describe('PacketBatch', () => {
  const batch = pack([
    { id: 41, bytes: [0x45, 1, 2] },
    { id: 42, bytes: [] },
    { id: 43, bytes: [0x60, 9] },
  ]);

  it('reads each packet in place', () => {
    expect([...batch.payload(0)]).toEqual([0x45, 1, 2]);
    expect(batch.payload(1).length).toBe(0);
    expect([...batch.payload(2)]).toEqual([0x60, 9]);
    expect(batch.payload(2).buffer).toBe(batch.data.buffer);
    expect([...batch.ids()]).toEqual([41, 42, 43]);
    expect(batch.id(1)).toBe(42);
  });

  it('refuses an index outside the batch', () => {
    expect(() => batch.id(3)).toThrow(RangeError);
    expect(() => batch.payload(-1)).toThrow(RangeError);
  });
});

describe('kernel queue counters', () => {
  it('parses /proc/net/netfilter/nfnetlink_queue', () => {
    const text = '    3  11455     0 2 65531     5    17      100  1\n    4  11500     2 2 65531     0     0        9  1\n';
    expect(parseKernelQueueCounters(text)).toEqual([
      { queue: 3, portId: 11455, waiting: 0, copyMode: 2, copyRange: 65531, queueDropped: 5, userDropped: 17, lastId: 100 },
      { queue: 4, portId: 11500, waiting: 2, copyMode: 2, copyRange: 65531, queueDropped: 0, userDropped: 0, lastId: 9 },
    ]);
    expect(parseKernelQueueCounters('')).toEqual([]);
    expect(parseKernelQueueCounters('garbage line here\n')).toEqual([]);
  });
});

describe('native errors', () => {
  it('turns an errno-carrying addon error into a CaptureError', () => {
    const thrown = Object.assign(new Error('NFQUEUE 0 is already bound by another process'), { errno: 1, code: 'EPERM' });
    let caught: unknown;
    try {
      callNative(() => {
        throw thrown;
      });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(CaptureError);
    expect(caught).toMatchObject({ message: thrown.message, errno: 1, code: 'EPERM' });
  });
});

describe('nft runners', () => {
  it('prefers libnftables when the addon is built, and the CLI when asked', () => {
    expect(createNftRunner().kind).toBe('libnftables');
    expect(createNftRunner({ prefer: 'cli' }).kind).toBe('cli');
  });

  it("reports nft's own error text for a script it cannot parse", () => {
    const runner = LibnftablesRunner.open();
    expect(() => runner.run('add tabel inet x', { check: true })).toThrow(NftError);
    expect(() => runner.run('add tabel inet x', { check: true })).toThrow(/nft failed: Error: syntax error/);
    runner.close();
  });
});
