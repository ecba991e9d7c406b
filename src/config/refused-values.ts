/**
 * Request paths and keys that have been published in docs, samples and tests. A config that uses
 * one is refused, because anyone can try them; keys are recognised in clear or as digests.
 */
import { digestKey } from './key-digest.js';

/**
 * Paths and keys published in the original knock-port's README, sample config, test suite and
 * scripts, and in this project's own docs. Anyone can try them, so a config using one is refused.
 */
export const PUBLISHED_PATHS = ['/step-1', '/step-2', '/step-1-SECRET', '/step-2-SECRET', '/SECRET-1', '/SECRET-2', '/12345', '/67890'];

export const PUBLISHED_KEYS = [
  'test_secret_http',
  'test_secret2_http',
  'test_secret_https',
  'test_secret2_https',
  'secret123_http',
  'secret456_https',
  '1234567890',
  'K1',
  'K2',
];

const publishedPathsLower = new Set(PUBLISHED_PATHS.map((path) => path.toLowerCase()));
// Digests, so a published key is recognised in clear or hashed, in any letter case.
const publishedKeyDigests = new Set(PUBLISHED_KEYS.flatMap((key) => [key, key.toLowerCase(), key.toUpperCase()]).map((key) => digestKey(key).toString('hex')));

export function isPublishedPath(path: string): boolean {
  return publishedPathsLower.has(path.toLowerCase());
}

export function isPublishedKey(digest: Buffer, clear?: string): boolean {
  return publishedKeyDigests.has(digest.toString('hex')) || (clear !== undefined && publishedKeyDigests.has(digestKey(clear.toLowerCase()).toString('hex')));
}
