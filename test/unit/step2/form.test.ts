import { describe, expect, it } from 'vitest';
import { SecretLockout, lockoutPolicy } from '../../../src/auth/lockout.js';
import { TotpVerifier, totpAt } from '../../../src/auth/totp.js';
import { authorizeStep2 } from '../../../src/step2/authorize.js';
import { parseStep2Body } from '../../../src/step2/form.js';
import { testConfig } from './fixtures.js';

const form = (text: string, type?: string) => parseStep2Body(Buffer.from(text), type);

describe('parseStep2Body', () => {
  it('reads urlencoded (with or without a content type) and JSON', () => {
    const fields = { app: 'vpn', accessKey: 'k e+y' };
    expect(form('app=vpn&access_key=k%20e%2By')).toEqual({ ok: true, fields });
    expect(form('app=vpn&access_key=k%20e%2By&other=1', 'application/x-www-form-urlencoded; charset=utf-8')).toEqual({ ok: true, fields });
    expect(form('{"app":"vpn","access_key":"k e+y","token":"123456"}', 'application/json')).toEqual({ ok: true, fields: { ...fields, token: '123456' } });
  });

  it('treats an empty token as no token', () => {
    expect(form('app=vpn&access_key=k&token=')).toEqual({ ok: true, fields: { app: 'vpn', accessKey: 'k' } });
  });

  it('says why a body is malformed', () => {
    expect(form('app=vpn')).toEqual({ ok: false, reason: 'field access_key missing' });
    expect(form('access_key=k')).toEqual({ ok: false, reason: 'field app missing' });
    expect(form('app=a&app=b&access_key=k')).toEqual({ ok: false, reason: 'field app given more than once' });
    expect(form('["vpn"]', 'application/json')).toEqual({ ok: false, reason: 'JSON body is not an object' });
    expect(form('{"app":"vpn","access_key":"k","token":123456}', 'application/json')).toEqual({ ok: false, reason: 'field token is not a string' });
    expect(form('app=vpn&access_key=k', 'multipart/form-data')).toEqual({ ok: false, reason: 'unsupported content type' });
    expect(parseStep2Body(Buffer.from([0x61, 0x3d, 0xff]), undefined)).toEqual({ ok: false, reason: 'body is not UTF-8' });
  });
});

describe('authorizeStep2', () => {
  const secret = 'JBSWY3DPEHPK3PXP';
  const config = testConfig(secret);
  const windows = [
    { app: 'vpn', user: 'alice', expiresAt: 0 },
    { app: 'vpn', user: 'bob', expiresAt: 0 },
  ];
  const lockout = new SecretLockout(lockoutPolicy(config.global));

  it('grants only the user of the window, for the window app', () => {
    const totp = new TotpVerifier();
    expect(authorizeStep2({ app: 'vpn', accessKey: 'alice-vpn-https-key' }, windows, config, totp, lockout)).toMatchObject({
      outcome: 'granted',
      user: { name: 'alice' },
    });
    expect(authorizeStep2({ app: 'ssh', accessKey: 'alice-ssh-https-key' }, windows, config, totp, lockout)).toEqual({
      outcome: 'forbidden',
      reason: 'no-window',
    });
    expect(authorizeStep2({ app: 'vpn', accessKey: 'alice-vpn-https-key' }, windows.slice(1), config, totp, lockout)).toEqual({
      outcome: 'forbidden',
      reason: 'bad-key',
    });
    expect(authorizeStep2({ app: 'VPN', accessKey: 'alice-vpn-https-key' }, windows, config, totp, lockout)).toEqual({
      outcome: 'forbidden',
      reason: 'unknown-app',
    });
  });

  it('requires, checks and consumes the TOTP token of a TOTP user', () => {
    let now = 1_700_000_000;
    const totp = new TotpVerifier(1, () => now);
    const bob = { app: 'vpn', accessKey: 'bob-vpn-https-key' };
    expect(authorizeStep2(bob, windows, config, totp, lockout)).toEqual({ outcome: 'forbidden', reason: 'no-token' });
    expect(authorizeStep2({ ...bob, token: totpAt(secret, now - 120) }, windows, config, totp, lockout)).toEqual({ outcome: 'forbidden', reason: 'bad-token' });
    expect(authorizeStep2({ ...bob, token: totpAt(secret, now) }, windows, config, totp, lockout)).toMatchObject({ outcome: 'granted' });
    expect(authorizeStep2({ ...bob, token: totpAt(secret, now) }, windows, config, totp, lockout)).toEqual({ outcome: 'forbidden', reason: 'bad-token' });
    now += 30;
    expect(authorizeStep2({ ...bob, token: totpAt(secret, now) }, windows, config, totp, lockout)).toMatchObject({ outcome: 'granted' });
  });
});
