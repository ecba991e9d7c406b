import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../../src/shared/bounded-map.js';
import { TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { SegmentCache } from '../../../src/step1/segment-cache.js';
import { craftTcp } from '../packet/craft.js';
import { seededRandom } from './seeded-random.js';

function segment(src: string, sport: number, seq: number): TcpSegmentView {
  const view = new TcpSegmentView();
  const dst = src.includes(':') ? '2001:db8::1' : '198.51.100.1';
  expect(decodeTcpPacket(craftTcp({ src, dst, sport, seq, flags: 0x18, ack: 1, payload: 'x' }), view)).toBeUndefined();
  return view;
}

describe('SegmentCache', () => {
  it('tells segments apart by source address, family, source port and sequence number', () => {
    const cache = new SegmentCache<string>(16);
    cache.set(segment('192.0.2.7', 4000, 1), 'a');
    expect(cache.get(segment('192.0.2.7', 4000, 1))).toBe('a');
    expect(cache.get(segment('192.0.2.8', 4000, 1))).toBeUndefined();
    expect(cache.get(segment('192.0.2.7', 4001, 1))).toBeUndefined();
    expect(cache.get(segment('192.0.2.7', 4000, 2))).toBeUndefined();
    // The same 4 bytes as an IPv6 address's first word is another source.
    expect(cache.get(segment('c000:207::', 4000, 1))).toBeUndefined();
    cache.set(segment('2001:db8::7', 4000, 0xffffffff), 'b');
    expect(cache.get(segment('2001:db8::7', 4000, 0xffffffff))).toBe('b');
    expect(cache.get(segment('2001:db8::8', 4000, 0xffffffff))).toBeUndefined();
  });

  it('forgets the oldest first, and an overwritten entry keeps its age', () => {
    const cache = new SegmentCache<number>(3);
    for (let seq = 1; seq <= 3; seq++) cache.set(segment('192.0.2.7', 1, seq), seq);
    cache.set(segment('192.0.2.7', 1, 1), 10);
    cache.set(segment('192.0.2.7', 1, 4), 4);
    expect([1, 2, 3, 4].map((seq) => cache.get(segment('192.0.2.7', 1, seq)))).toEqual([undefined, 2, 3, 4]);
    expect(cache.size).toBe(3);
  });

  it('holds exactly what a map with the oldest-first bound holds, through many evictions', () => {
    const capacity = 500;
    const cache = new SegmentCache<number>(capacity);
    const reference = new BoundedMap<string, number>(capacity);
    const random = seededRandom(0x5eed);
    const next = (n: number) => Math.floor(random() * n);
    const sources = ['192.0.2.1', '192.0.2.2', '2001:db8::1', '2001:db8::2'];
    const views = Array.from({ length: 4000 }, (_, i) => segment(sources[i % 4]!, next(8), next(600)));
    for (let i = 0; i < 40_000; i++) {
      const view = views[next(views.length)]!;
      const key = `${view.family}|${view.packet.toString('hex', view.srcOffset, view.srcOffset + view.addressLength)}|${view.sport}|${view.seq}`;
      expect(cache.get(view)).toBe(reference.get(key));
      if (next(2) === 0) {
        cache.set(view, i);
        reference.set(key, i);
      }
    }
    expect(cache.size).toBe(capacity);
    expect(cache.size).toBe(reference.size);
  });
});
