import { describe, expect, it } from 'vitest';
import { SecretLockout, lockoutPolicy } from '../../../src/auth/lockout.js';
import { TotpVerifier, totpAt } from '../../../src/auth/totp.js';
import type { UsedCode } from '../../../src/auth/used-codes.js';
import { authorizeStep2 } from '../../../src/step2/authorize.js';
import type { Step2Fields } from '../../../src/step2/form.js';
import { testConfig } from './fixtures.js';

// Step 2 must not confirm a user's step-2 key before the TOTP token: not by its answer (see
// server.test.ts, byte for byte) and not by the work it does. The TOTP work depends only on
// whether a token was sent, never on whether the key was right.

const SECRET = 'JBSWY3DPEHPK3PXP';
const config = testConfig(SECRET);
const windows = [{ app: 'vpn', user: 'bob', expiresAt: 0 }];
const NOW = 1_700_000_000;

/** Counts the TOTP computations (real or decoy) a decision costs. */
class CountingVerifier extends TotpVerifier {
  computations = 0;
  // verify goes through accept too: counting accept counts every real check.
  override accept(secret: string, code: string): UsedCode | undefined {
    this.computations++;
    return super.accept(secret, code);
  }
  override verifyNothing(code: string): void {
    this.computations++;
    super.verifyNothing(code);
  }
}

function decide(fields: Step2Fields) {
  const totp = new CountingVerifier(1, () => NOW);
  const decision = authorizeStep2(fields, windows, config, totp, new SecretLockout(lockoutPolicy(config.global)));
  return { decision, computations: totp.computations };
}

describe('a TOTP user at step 2', () => {
  const rightKey = { app: 'vpn', accessKey: 'bob-vpn-https-key' };
  const wrongKey = { app: 'vpn', accessKey: 'not-bobs-https-key' };
  const wrongToken = totpAt(SECRET, NOW - 300);

  it('without a token: the same refusal and no TOTP work, right key or wrong', () => {
    expect(decide(rightKey)).toEqual({ decision: { outcome: 'forbidden', reason: 'no-token' }, computations: 0 });
    expect(decide(wrongKey)).toEqual({ decision: { outcome: 'forbidden', reason: 'bad-key' }, computations: 0 });
  });

  it('with a token: one TOTP computation, right key or wrong', () => {
    expect(decide({ ...rightKey, token: wrongToken })).toEqual({ decision: { outcome: 'forbidden', reason: 'bad-token' }, computations: 1 });
    expect(decide({ ...wrongKey, token: wrongToken })).toEqual({ decision: { outcome: 'forbidden', reason: 'bad-key' }, computations: 1 });
    expect(decide({ ...rightKey, token: totpAt(SECRET, NOW) })).toMatchObject({ decision: { outcome: 'granted' }, computations: 1 });
  });
});
