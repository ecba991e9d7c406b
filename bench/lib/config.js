/**
 * The one configuration every benchmark uses (the daemon reads it from a file, the
 * in-process inspector parses the same text), and the addresses of the bench network.
 * The topology follows the original's baseline: server 10.99.0.1, client 10.99.0.2,
 * extra client addresses in 10.99.128.0/17 routed through the client.
 */
import { randomBytes } from 'node:crypto';

export const NET = {
  server: '10.99.0.1',
  client: '10.99.0.2',
  extraPrefix: '10.99.128.0/17',
  /** Sources the SYN flood spoofs (inside extraPrefix, so their replies are routed to the client; no knock uses them). */
  spoofedPrefix: '10.99.160.0/19',
  gwIf: 'kpbgw0',
  clientIf: 'kpbcl0',
};

export const PORTS = { step1: 80, https: 443, service: 8080, unprotected: 8081, metrics: 9464 };
export const PATHS = { step1: '/knock-bench-4c1e', step2: '/step2-bench-9b7d' };
export const APP = 'svc';
/** The user of APP's list-form keys (config/users.ts names them key0, key1, ...): grants for any other are ignored. */
export const USER = 'key0';

const secret = () => randomBytes(12).toString('hex');
export const KEYS = { http: `bench-http-${secret()}`, https: `bench-https-${secret()}`, wrong: `wrong-key-${secret()}` };

/**
 * `step1_rate_per_second` is as high as every backend takes (iptables doubles it into a hashlimit burst, at most 1,000,000) so the kernel's budget does not thin the flood:
 * the benchmark measures what reaches the inspector, the worst case for the daemon. The app
 * lockout is off: the wrong-key flood would otherwise lock the app (by design) and refuse the
 * valid knocks measured during it. `step1Workers` sets the step-1 worker threads (the kernel
 * fans step-1 packets over that many queues or NFLOG groups).
 */
export function benchConfigYaml({ firewall, capture, stateDir, controlSocket, rateLimitPerMinute = 60, step1Workers, step1Xdp }) {
  // Without step1Workers the daemon's default applies (\`auto\`: one worker per core).
  const workers = (step1Workers === undefined ? '' : `  step1_workers: ${step1Workers}\n`) + (step1Xdp === undefined ? '' : `  step1_xdp: ${step1Xdp}\n`);
  return `global:
  http_post_path: ${PATHS.step1}
  https_post_path: ${PATHS.step2}
  step1_2_rate_limit_per_minute: ${rateLimitPerMinute}
  interface_ext: ${NET.gwIf}
  interface_int: ${NET.gwIf}
  http_port: ${PORTS.step1}
  https_port: ${PORTS.https}
  firewall_type: ${firewall}
  capture: ${capture}
  state_dir: ${stateDir}
  control_socket: ${controlSocket}
  metrics_listen: 127.0.0.1:${PORTS.metrics}
  step1_rate_per_second: 500000
  lockout_app_failures: 0
${workers}${APP}:
  port: ${PORTS.service}
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  destination: local
  protocol: tcp
  duration: 600
  step2_https_duration: 30
`;
}
