/**
 * The demo's gateway config: the same format an operator writes, with random paths and keys
 * made for this run only, and short durations so that expiry is visible.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ADDR, IF } from './topology.js';

export interface DemoSecrets {
  step1Path: string;
  step2Path: string;
  step1Key: string;
  step2Key: string;
}

/** The two protected services: a web server on the gateway and one on the LAN host behind it. */
export const DEMO_APPS = {
  local: { name: 'gateway-web', port: 8080 },
  forwarded: { name: 'lan-web', port: 8081, destinationPort: 80 },
} as const;

export const DEMO_USER = 'alice';
/** Seconds a service stays open after step 2: long enough to look, short enough to watch it close. */
export const SERVICE_SECONDS = 8;
/** Seconds the HTTPS port stays open after step 1. */
export const STEP2_WINDOW_SECONDS = 5;

export function randomDemoSecrets(): DemoSecrets {
  const hex = (bytes: number) => randomBytes(bytes).toString('hex');
  return { step1Path: `/knock-${hex(6)}`, step2Path: `/open-${hex(6)}`, step1Key: hex(16), step2Key: hex(16) };
}

/** The config file text; `dir` holds the state file and the control socket. */
export function demoConfigYaml(secrets: DemoSecrets, dir: string): string {
  // One user, the same key pair for both apps (allowed: a pair may serve several apps).
  const users = `  users:
    - name: ${DEMO_USER}
      access_key_http: ${secrets.step1Key}
      access_key_https: ${secrets.step2Key}`;
  return `# knock-port demo: generated for one run; the paths and keys are random.
global:
  http_post_path: ${secrets.step1Path}
  https_post_path: ${secrets.step2Path}
  step1_2_rate_limit_per_minute: 60
  interface_ext: ${IF.gwWan}
  interface_int: ${IF.gwLan}
  state_dir: ${join(dir, 'state')}
  control_socket: ${join(dir, 'control.sock')}

${DEMO_APPS.local.name}:
  port: ${DEMO_APPS.local.port}
  destination: local
  duration: ${SERVICE_SECONDS}
  step2_https_duration: ${STEP2_WINDOW_SECONDS}
${users}

${DEMO_APPS.forwarded.name}:
  port: ${DEMO_APPS.forwarded.port}
  destination: ${ADDR.lan4}:${DEMO_APPS.forwarded.destinationPort}
  duration: ${SERVICE_SECONDS}
  step2_https_duration: ${STEP2_WINDOW_SECONDS}
${users}
`;
}
