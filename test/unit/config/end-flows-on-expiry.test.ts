/** `end_flows_on_expiry` per app: off unless set, a boolean, shown by `check`. */
import { describe, expect, it } from 'vitest';
import { configSummary, summarizeConfig } from '../../../src/config/summary.js';
import { expectRefusedOnce, load, VALID } from './helpers.js';

describe('end_flows_on_expiry', () => {
  it('is off by default: flows outlive the grant', () => {
    const config = load(VALID);
    expect(config.apps[0]!.endFlowsOnExpiry).toBe(false);
    expect(configSummary(config).apps[0]!.endFlowsOnExpiry).toBe(false);
    expect(summarizeConfig(config)).toMatch(/open 3600 s, step-2 window/);
  });

  it('true ends the flows at expiry, and check says so', () => {
    const config = load(`${VALID}  end_flows_on_expiry: true\n`);
    expect(config.apps[0]!.endFlowsOnExpiry).toBe(true);
    expect(configSummary(config).apps[0]!.endFlowsOnExpiry).toBe(true);
    expect(summarizeConfig(config)).toMatch(/open 3600 s \(flows end at expiry\), step-2 window/);
  });

  it('refuses anything but a boolean', () => {
    const text = `${VALID}  end_flows_on_expiry: sometimes\n`;
    expectRefusedOnce(text, 'openvpn.end_flows_on_expiry', 'end_flows_on_expiry', /boolean|true or false/);
  });
});
