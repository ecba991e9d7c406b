/**
 * A Map that forgets its oldest insertions past `capacity`. The oldest key comes from a ring
 * of keys, not from `map.keys().next()`: after many deletions that call walks over the
 * deleted slots and makes eviction cost grow with the map.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  private readonly ring: Array<K | undefined>;
  private next = 0;

  constructor(readonly capacity: number) {
    this.ring = new Array<K | undefined>(capacity).fill(undefined);
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Inserts or overwrites; an overwritten key keeps its original place in the eviction order. */
  set(key: K, value: V): void {
    if (this.map.has(key)) {
      this.map.set(key, value);
      return;
    }
    const evicted = this.ring[this.next];
    if (evicted !== undefined) this.map.delete(evicted);
    this.ring[this.next] = key;
    this.next = (this.next + 1) % this.capacity;
    this.map.set(key, value);
  }

  get size(): number {
    return this.map.size;
  }
}
