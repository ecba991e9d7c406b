import { describe, expect, it } from 'vitest';
import { NftError } from '../../../src/firewall/nft-runner.js';
import { logRefusedKnock } from '../../../src/shared/knock-refusal.js';
import { oneLine } from '../../../src/shared/one-line.js';
import { STEP1_REASONS, step1RefusalClass } from '../../../src/step1/decision.js';
import { capturedLogger } from '../sessions/log-capture.js';

describe('step-1 refusal classes', () => {
  it('gives every key, app, user, one-time code and lockout problem the one class "refused"', () => {
    for (const reason of ['unknown-app', 'bad-key', 'otp-required', 'bad-otp', 'locked'] as const) expect(step1RefusalClass(reason)).toBe('refused');
  });

  it('keeps apart only what is decided before a secret is looked at', () => {
    expect(step1RefusalClass('rate-limited')).toBe('rate-limited');
    for (const reason of ['not-http', 'bad-path', 'bad-body', 'too-large', 'length-mismatch'] as const) expect(step1RefusalClass(reason)).toBe('malformed');
  });

  it('has no class (no info line) where the source address is unproven: decode failures, spoofed and ignored segments', () => {
    for (const reason of ['truncated', 'bad-ip-header', 'fragment', 'bad-tcp-options', 'bad-cookie', 'no-ack', 'pure-ack', 'rst'] as const) {
      expect(step1RefusalClass(reason)).toBeUndefined();
    }
    expect(step1RefusalClass('granted')).toBeUndefined();
    expect(step1RefusalClass(undefined)).toBeUndefined();
  });

  it('uses only three classes across every reason', () => {
    const classes = new Set(STEP1_REASONS.map(step1RefusalClass).filter((c) => c !== undefined));
    expect([...classes].sort()).toEqual(['malformed', 'rate-limited', 'refused']);
  });
});

describe('the refused-knock line', () => {
  it('is one info line with the address, port, step and class, and nothing else', () => {
    const logs = capturedLogger('info');
    logRefusedKnock(logs.logger, { ip: '2001:db8::7', port: 40000, step: 1, class: 'refused' });
    logRefusedKnock(logs.logger, { ip: '198.51.100.7', step: 2, class: 'rate-limited' });
    const [first, second] = logs.lines();
    expect(first).toEqual({
      level: 30,
      time: expect.any(Number),
      name: 'knock-port',
      ip: '2001:db8::7',
      port: 40000,
      step: 1,
      class: 'refused',
      msg: 'knock refused',
    });
    expect(second).toEqual({
      level: 30,
      time: expect.any(Number),
      name: 'knock-port',
      ip: '198.51.100.7',
      step: 2,
      class: 'rate-limited',
      msg: 'knock refused',
    });
  });
});

describe('nft errors on one line', () => {
  const nftOutput = [
    'Error: Could not process rule: No such file or directory',
    'add rule inet knock_port_probe c meta l4proto tcp queue num 5',
    '                                                  ^^^^^^^^^^^^^',
    '',
  ].join('\n');

  it('drops the caret diagram and joins the rest', () => {
    expect(oneLine(nftOutput)).toBe('Error: Could not process rule: No such file or directory | add rule inet knock_port_probe c meta l4proto tcp queue num 5');
    expect(oneLine('one line')).toBe('one line');
  });

  it('is what an NftError says', () => {
    const err = new NftError(`nft failed: ${nftOutput}`, 'add rule ...');
    expect(err.message).not.toContain('\n');
    expect(err.message).not.toContain('^');
    expect(err.message).toContain('No such file or directory');
  });
});
