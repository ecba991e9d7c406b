import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { newTotpSecret } from '../../../src/auth/totp.js';
import { hashedKeyString } from '../../../src/config/key-digest.js';
import { ConfigError, parseConfig, type ConfigIssue } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';

/** A valid original-format config; tests append or replace lines to make it invalid. */
export const VALID = `global:
  http_post_path: /a8Fq2Lm9Zx
  https_post_path: /Qp3Rt7Vw1Y
  step1_2_rate_limit_per_minute: 60
  interface_ext: eth0
  interface_int: eth1
openvpn:
  port: 1194
  access_key_http:
    - 3f9a1c7e5b2d8046
  access_key_https:
    - b6e2d4f8a1c39057
  destination: local
  protocol: udp
  duration: 3600
  step2_https_duration: 5
`;

export function issuesOf(text: string): ConfigIssue[] {
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('expected the config to be refused, but it loaded');
}

export function load(text: string): Config {
  return parseConfig(text, 'test.yaml');
}

/** 1-based number of the first line of `text` that contains `marker`. */
export function lineOf(text: string, marker: string): number {
  const index = text.split('\n').findIndex((line) => line.includes(marker));
  if (index < 0) throw new Error(`marker '${marker}' not in the text`);
  return index + 1;
}

/**
 * The config is refused with exactly one issue, at `path`, on the line containing `marker`,
 * whose message matches `message`.
 */
export function expectRefusedOnce(text: string, path: string, marker: string, message: RegExp): ConfigIssue {
  const issues = issuesOf(text);
  expect(issues.map((issue) => `${issue.path} @${issue.line}: ${issue.message}`)).toHaveLength(1);
  const [issue] = issues;
  expect(issue!.path).toBe(path);
  expect(issue!.line).toBe(lineOf(text, marker));
  expect(issue!.message).toMatch(message);
  return issue!;
}

/** config.example.yaml as published: every path, key and TOTP secret in it is refused. */
export const EXAMPLE_CONFIG = new URL('../../../config.example.yaml', import.meta.url).pathname;

/** The secrets of config.example.yaml: request paths, keys in clear, hashed keys, TOTP secrets. */
export const EXAMPLE_SECRET = /\/[0-9a-f]{32}\b|\b[0-9a-f]{32}\b|sha256:[0-9a-f]{64}|\b[A-Z2-7]{32}\b/g;

/**
 * config.example.yaml with every published secret replaced by a fresh one of the same kind, each
 * different: the example's structure as an operator would fill it in.
 */
export function exampleWithFreshSecrets(): string {
  return readFileSync(EXAMPLE_CONFIG, 'utf8').replace(EXAMPLE_SECRET, (secret) => {
    if (secret.startsWith('/')) return `/${randomBytes(16).toString('hex')}`;
    if (secret.startsWith('sha256:')) return hashedKeyString(randomBytes(16).toString('hex'));
    if (/^[0-9a-f]{32}$/.test(secret)) return randomBytes(16).toString('hex');
    return newTotpSecret();
  });
}
