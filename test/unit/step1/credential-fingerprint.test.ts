/**
 * A step-1 grant decided by a worker on the config before a reload is honoured only when the
 * user's step-1 credentials are the same in the current config (currentMatch, used by the
 * daemon for every grant a worker posts).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AppConfig, User } from '../../../src/config/types.js';
import { credentialFingerprint, currentMatch, type GrantEvent } from '../../../src/step1-workers/protocol.js';

const digest = (key: string) => createHash('sha256').update(key).digest();

describe('credentialFingerprint', () => {
  const user = { step1Key: digest('alice-http-key-83d1f0a2') };

  it('is the same for the same key, also when the digest went through structured clone (a Uint8Array)', () => {
    const cloned = { step1Key: new Uint8Array(structuredClone(user.step1Key)) as Buffer };
    expect(credentialFingerprint(cloned)).toBe(credentialFingerprint({ step1Key: digest('alice-http-key-83d1f0a2') }));
  });

  it('changes with a rotated key', () => {
    expect(credentialFingerprint({ step1Key: digest('alice-http-key-rotated-1') })).not.toBe(credentialFingerprint(user));
  });

  it('changes when a one-time code becomes required, or its secret changes', () => {
    const withOtp = credentialFingerprint({ ...user, step1OtpSecret: 'JBSWY3DPEHPK3PXP' });
    expect(withOtp).not.toBe(credentialFingerprint(user));
    expect(credentialFingerprint({ ...user, step1OtpSecret: 'KRSXG5CTMVRXEZLU' })).not.toBe(withOtp);
  });
});

describe('currentMatch', () => {
  const alice = { name: 'alice', index: 0, step1Key: digest('alice-http-key-83d1f0a2'), step2Key: digest('alice-https') } as User;
  const vpn = { name: 'vpn', users: [alice] } as unknown as AppConfig;
  const grant = (overrides: Partial<GrantEvent> = {}): GrantEvent => ({
    ip: '10.0.0.1',
    app: 'vpn',
    user: 'alice',
    receivedAt: 0,
    credentials: credentialFingerprint(alice),
    ...overrides,
  });

  it("is the running config's app and user when the worker judged on the same credentials", () => {
    const matched = currentMatch(grant(), [vpn]);
    expect(matched?.app).toBe(vpn);
    expect(matched?.user).toBe(alice);
  });

  it('is nothing for a removed app or user, or a rotated key', () => {
    expect(currentMatch(grant({ app: 'ssh' }), [vpn])).toBeUndefined();
    expect(currentMatch(grant({ user: 'bob' }), [vpn])).toBeUndefined();
    expect(currentMatch(grant({ credentials: credentialFingerprint({ step1Key: digest('rotated') }) }), [vpn])).toBeUndefined();
  });
});
