/**
 * The config the daemon runs on and the firewall backend installed from it. Every part reads
 * both here when it needs them, so a reload, which swaps them together, reaches every part at
 * once: no part keeps the config it was started with.
 */
import type { Config } from '../config/types.js';
import { flowScopeOf, type MarkedFlowScope } from '../firewall/conntrack.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { GrantingFirewall } from '../sessions/grants.js';

export class RunningConfig {
  private current: { config: Config; firewall: FirewallBackend };

  constructor(config: Config, firewall: FirewallBackend) {
    this.current = { config, firewall };
  }

  get config(): Config {
    return this.current.config;
  }

  get firewall(): FirewallBackend {
    return this.current.firewall;
  }

  /** A reload: the new config and the backend installed from it; returns the replaced backend, to close. */
  swap(config: Config, firewall: FirewallBackend): FirewallBackend {
    const replaced = this.current.firewall;
    this.current = { config, firewall };
    return replaced;
  }

  /** The running config's protected ports and grant mark, for ending flows. */
  readonly flowScope = (): MarkedFlowScope => flowScopeOf(this.config);

  /** For the Granter: grants and revokes go to the backend running at the time. */
  readonly granting: GrantingFirewall = {
    grantStep2: (ip, ttl) => this.firewall.grantStep2(ip, ttl),
    grantService: (ip, app, ttl) => this.firewall.grantService(ip, app, ttl),
    revoke: (ip, app) => this.firewall.revoke(ip, app),
  };
}
