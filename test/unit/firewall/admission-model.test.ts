/** The admission model the kernel matrix (test/kernel/firewall/admission.test.ts) checks the kernel against. */
import { describe, expect, it } from 'vitest';
import {
  GrantBook,
  HOST_FIREWALL_KINDS,
  expectGapFlow,
  expectNewFlow,
  type Destination,
  type HostFirewallKind,
  type ProbeContext,
} from '../../kernel/firewall/admission-model.js';

const T0 = 1_760_000_000_000;
const AT = { earliest: T0, latest: T0 + 300 };
const MARGIN = 2000;
const GRANTED = '2001:db8:1::100';
const NEIGHBOUR = '2001:db8:1::101';

const LOCAL: Destination = { kind: 'local-service', protocol: 'tcp', app: 'ssh' };
const OTHER_APP: Destination = { kind: 'local-service', protocol: 'udp', app: 'vpn' };
const DNAT: Destination = { kind: 'dnat-public', protocol: 'tcp', app: 'web' };
const TARGET: Destination = { kind: 'dnat-target', protocol: 'tcp' };
const LAN_SAME_PORT: Destination = { kind: 'lan-same-port', protocol: 'tcp' };
const HTTPS: Destination = { kind: 'https', protocol: 'tcp' };
const UNPROTECTED: Destination = { kind: 'unprotected', protocol: 'udp' };

/** A source granted ssh and web for 60 s, its step-2 window 30 s. */
function bookWithGrants(): GrantBook {
  const book = new GrantBook();
  book.step1(GRANTED, AT, 30, true);
  book.step2(GRANTED, 'ssh', AT, 60);
  book.step2(GRANTED, 'web', AT, 60);
  return book;
}

function context(book: GrantBook, over: Partial<ProbeContext> = {}): ProbeContext {
  return { book, source: GRANTED, host: 'none', daemonUp: true, now: T0 + 5000, marginMs: MARGIN, ...over };
}

describe('admission model', () => {
  it('opens exactly what the source was granted, and the HTTPS port during its step-2 window', () => {
    const ctx = context(bookWithGrants());
    expect(expectNewFlow(LOCAL, ctx)).toBe('admitted');
    expect(expectNewFlow(DNAT, ctx)).toBe('admitted');
    expect(expectNewFlow(HTTPS, ctx)).toBe('admitted');
    expect(expectNewFlow(OTHER_APP, ctx)).toBe('refused');
  });

  it('never opens the DNAT target directly, whatever the grants and the host firewall', () => {
    for (const host of HOST_FIREWALL_KINDS) expect(expectNewFlow(TARGET, context(bookWithGrants(), { host }))).toBe('refused');
  });

  it('leaves what is not knock-port`s to the host firewall, granted source or not', () => {
    const expected: Record<HostFirewallKind, string> = {
      none: 'admitted',
      'vyos-accept': 'admitted',
      'nftables-drop': 'refused',
      'iptables-drop': 'refused',
      ufw: 'refused',
      'vyos-drop': 'refused',
    };
    for (const host of HOST_FIREWALL_KINDS) {
      for (const source of [GRANTED, NEIGHBOUR]) {
        const ctx = context(bookWithGrants(), { host, source });
        expect(expectNewFlow(LAN_SAME_PORT, ctx), `${host} ${source}`).toBe(expected[host]);
        expect(expectNewFlow(UNPROTECTED, ctx), `${host} ${source}`).toBe(expected[host]);
      }
    }
  });

  it('a LAN host at a forwarded app`s public port, where nothing listens, is never reached (no DNAT of flows not addressed to the gateway)', () => {
    const bypass: Destination = { kind: 'lan-same-port', protocol: 'tcp', nothingListens: true };
    for (const host of HOST_FIREWALL_KINDS) {
      expect(expectNewFlow(bypass, context(bookWithGrants(), { host }))).toBe('refused');
    }
  });

  it('a granted connection passes every host firewall (its mark is accepted); an ungranted one none', () => {
    for (const host of HOST_FIREWALL_KINDS) {
      expect(expectNewFlow(LOCAL, context(bookWithGrants(), { host }))).toBe('admitted');
      expect(expectNewFlow(LOCAL, context(bookWithGrants(), { host, source: NEIGHBOUR }))).toBe('refused');
    }
  });

  it('step 1 alone opens the HTTPS port only', () => {
    const book = new GrantBook();
    book.step1(GRANTED, AT, 30, true);
    expect(expectNewFlow(HTTPS, context(book))).toBe('admitted');
    expect(expectNewFlow(LOCAL, context(book))).toBe('refused');
    expect(expectNewFlow(DNAT, context(book))).toBe('refused');
  });

  it('a knock while the daemon is down grants nothing; live grants still pass, HTTPS has no listener', () => {
    const book = bookWithGrants();
    book.step1(NEIGHBOUR, AT, 30, false);
    const down = context(book, { daemonUp: false });
    expect(expectNewFlow(HTTPS, { ...down, source: NEIGHBOUR })).toBe('refused');
    expect(expectNewFlow(LOCAL, down)).toBe('admitted');
    expect(expectNewFlow(HTTPS, down)).toBe('refused');
  });

  it('a revoke removes every grant of the address, the step-2 window included', () => {
    const book = bookWithGrants();
    book.revoke(GRANTED);
    for (const dest of [LOCAL, DNAT, HTTPS]) expect(expectNewFlow(dest, context(book))).toBe('refused');
  });

  it('grants expire on time; close to an expiry the answer is uncertain rather than a guess', () => {
    const book = bookWithGrants();
    expect(expectNewFlow(HTTPS, context(book, { now: T0 + 27_000 }))).toBe('admitted');
    expect(expectNewFlow(HTTPS, context(book, { now: T0 + 29_000 }))).toBe('uncertain');
    expect(expectNewFlow(HTTPS, context(book, { now: T0 + 30_200 }))).toBe('uncertain');
    expect(expectNewFlow(HTTPS, context(book, { now: T0 + 32_400 }))).toBe('refused');
    expect(expectNewFlow(LOCAL, context(book, { now: T0 + 32_400 }))).toBe('admitted');
    expect(expectNewFlow(LOCAL, context(book, { now: T0 + 63_000 }))).toBe('refused');
    expect(book.lastExpiry()).toBe(T0 + 300 + 60_000);
  });

  it('a later step-1 knock replaces the window (the kernel element gets the new timeout)', () => {
    const book = new GrantBook();
    book.step1(GRANTED, AT, 30, true);
    book.step1(GRANTED, { earliest: T0 + 20_000, latest: T0 + 20_100 }, 30, true);
    expect(expectNewFlow(HTTPS, context(book, { now: T0 + 40_000 }))).toBe('admitted');
  });

  it('a flow opened during a flush gap passes after the heal only if granted; the host`s own flows are not judged', () => {
    const book = bookWithGrants();
    for (const host of HOST_FIREWALL_KINDS) {
      expect(expectGapFlow(LOCAL, context(book, { host }))).toBe('admitted');
      expect(expectGapFlow(DNAT, context(book, { host }))).toBe('admitted');
      expect(expectGapFlow(LOCAL, context(book, { host, source: NEIGHBOUR }))).toBe('refused');
      expect(expectGapFlow(TARGET, context(book, { host }))).toBe('refused');
      expect(() => expectGapFlow(UNPROTECTED, context(book, { host }))).toThrow(/host firewall/);
      expect(() => expectGapFlow(LAN_SAME_PORT, context(book, { host }))).toThrow(/host firewall/);
    }
  });
});
