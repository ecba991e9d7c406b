import { describe, expect, it } from 'vitest';
import { resolveClientAddress, trustedProxies } from '../../../src/step2/client-address.js';

const localProxy = trustedProxies(['127.0.0.1/32', '::1/128']);

describe('the client address of a step-2 request', () => {
  it('is the peer itself when the peer is not a trusted proxy, whatever its headers say', () => {
    const headers = { 'x-real-ip': '203.0.113.9', 'x-forwarded-for': '203.0.113.9' };
    expect(resolveClientAddress('192.0.2.1', headers, localProxy)).toEqual({ ok: true, ip: '192.0.2.1' });
    expect(resolveClientAddress('127.0.0.1', headers, trustedProxies([]))).toEqual({ ok: true, ip: '127.0.0.1' });
    expect(resolveClientAddress('127.0.0.1', headers, trustedProxies())).toEqual({ ok: true, ip: '127.0.0.1' });
  });

  it('is X-Real-IP from a trusted proxy, which is named as the proxy', () => {
    expect(resolveClientAddress('127.0.0.1', { 'x-real-ip': '203.0.113.9' }, localProxy)).toEqual({ ok: true, ip: '203.0.113.9', proxy: '127.0.0.1' });
  });

  it('takes X-Real-IP only where it agrees with X-Forwarded-For: a client-sent one passed through is refused', () => {
    // The proxy appended the client to X-Forwarded-For and passed the client's own X-Real-IP on unchanged.
    const passedThrough = { 'x-real-ip': '203.0.113.9', 'x-forwarded-for': '198.51.100.7' };
    expect(resolveClientAddress('127.0.0.1', passedThrough, localProxy)).toMatchObject({ ok: false, reason: expect.stringMatching(/name different clients/) });
    const agreeing = { 'x-real-ip': '198.51.100.7', 'x-forwarded-for': '198.51.100.7' };
    expect(resolveClientAddress('127.0.0.1', agreeing, localProxy)).toEqual({ ok: true, ip: '198.51.100.7', proxy: '127.0.0.1' });
  });

  describe('through a chain: client → proxy A (trusted) → proxy B (trusted, the peer)', () => {
    const chain = trustedProxies(['10.0.0.1/32', '10.0.0.2/32']);
    const A = '10.0.0.1';
    const B = '10.0.0.2';
    const CLIENT = '198.51.100.7';
    const VICTIM = '203.0.113.66';

    it('is the rightmost X-Forwarded-For entry that is not a trusted proxy', () => {
      expect(resolveClientAddress(B, { 'x-forwarded-for': `${CLIENT}, ${A}` }, chain)).toEqual({ ok: true, ip: CLIENT, proxy: B });
      // Entries the client sent itself stay on the left of the one its proxy appended.
      expect(resolveClientAddress(B, { 'x-forwarded-for': `${VICTIM}, ${CLIENT}, ${A}` }, chain)).toMatchObject({ ip: CLIENT });
      expect(resolveClientAddress(B, { 'x-forwarded-for': `${A}, ${CLIENT}, ${A}` }, chain)).toMatchObject({ ip: CLIENT });
    });

    it('does not let a client-sent X-Real-IP, passed through by both proxies, name another address', () => {
      const result = resolveClientAddress(B, { 'x-real-ip': VICTIM, 'x-forwarded-for': `${CLIENT}, ${A}` }, chain);
      expect(result).toMatchObject({ ok: false });
      expect(JSON.stringify(result)).not.toContain(VICTIM);
    });

    it('reads an X-Real-IP naming a trusted proxy as a hop (B set it to A), not as the client', () => {
      expect(resolveClientAddress(B, { 'x-real-ip': A, 'x-forwarded-for': `${CLIENT}, ${A}` }, chain)).toMatchObject({ ip: CLIENT });
      // A set X-Real-IP, B passed it on and appended to X-Forwarded-For: both name the client.
      expect(resolveClientAddress(B, { 'x-real-ip': CLIENT, 'x-forwarded-for': `${CLIENT}, ${A}` }, chain)).toMatchObject({ ip: CLIENT });
    });

    it('is the leftmost entry when every entry is a trusted proxy (a request from a proxy host itself)', () => {
      expect(resolveClientAddress(B, { 'x-forwarded-for': `${A}, ${B}` }, chain)).toEqual({ ok: true, ip: A, proxy: B });
    });
  });

  it('takes the last X-Forwarded-For entry that is not a trusted proxy: the earlier ones are whatever the client sent', () => {
    const headers = { 'x-forwarded-for': '10.0.0.1,203.0.113.66 ,  198.51.100.7 ' };
    expect(resolveClientAddress('127.0.0.1', headers, localProxy)).toEqual({ ok: true, ip: '198.51.100.7', proxy: '127.0.0.1' });
  });

  it('trusts whole networks, IPv4 and IPv6', () => {
    const networks = trustedProxies(['10.0.0.0/8', 'fd00::/8']);
    const headers = { 'x-real-ip': '203.0.113.9' };
    expect(resolveClientAddress('10.200.3.4', headers, networks)).toMatchObject({ ip: '203.0.113.9', proxy: '10.200.3.4' });
    expect(resolveClientAddress('fd12::7', headers, networks)).toMatchObject({ ip: '203.0.113.9', proxy: 'fd12::7' });
    expect(resolveClientAddress('11.0.0.1', headers, networks)).toEqual({ ok: true, ip: '11.0.0.1' });
    expect(resolveClientAddress('fe80::1', headers, networks)).toEqual({ ok: true, ip: 'fe80::1' });
  });

  it('writes IPv6 clients in one canonical form, and IPv4-mapped ones as IPv4', () => {
    expect(resolveClientAddress('::1', { 'x-real-ip': '2001:DB8:0:0::0:42' }, localProxy)).toMatchObject({ ip: '2001:db8::42', proxy: '::1' });
    expect(resolveClientAddress('::1', { 'x-forwarded-for': '::ffff:203.0.113.9' }, localProxy)).toMatchObject({ ip: '203.0.113.9' });
    // A dual-stack listener reports an IPv4 proxy as IPv4-mapped; the server canonicalizes it first.
    expect(resolveClientAddress('127.0.0.1', { 'x-real-ip': '2001:db8::42' }, localProxy)).toMatchObject({ ip: '2001:db8::42' });
  });

  it('is refused when a trusted proxy names no client, or not exactly one address', () => {
    for (const headers of [
      {},
      { 'x-real-ip': '' },
      { 'x-real-ip': 'unknown' },
      { 'x-real-ip': '203.0.113.9, 198.51.100.7' },
      { 'x-real-ip': ['203.0.113.9', '198.51.100.7'] },
      { 'x-real-ip': '203.0.113.9:443' },
      { 'x-real-ip': '[2001:db8::42]' },
      { 'x-real-ip': 'fe80::1%eth0' },
      { 'x-forwarded-for': '203.0.113.9,' },
      { 'x-forwarded-for': 'gw.example' },
    ]) {
      const result = resolveClientAddress('127.0.0.1', headers, localProxy);
      expect(result, JSON.stringify(headers)).toMatchObject({ ok: false });
    }
  });

  it('says which header was wrong', () => {
    expect(resolveClientAddress('127.0.0.1', {}, localProxy)).toEqual({ ok: false, reason: 'trusted proxy sent neither X-Real-IP nor X-Forwarded-For' });
    expect(resolveClientAddress('127.0.0.1', { 'x-forwarded-for': 'x' }, localProxy)).toEqual({
      ok: false,
      reason: 'trusted proxy sent a X-Forwarded-For that is not one IP address',
    });
  });
});
