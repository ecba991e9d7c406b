/**
 * Request paths, keys and TOTP secrets that have been published in docs, samples and tests. A
 * config that uses one is refused, because anyone can try them; keys are recognised in clear or
 * as digests.
 */
import { digestKey } from './key-digest.js';

/**
 * Paths published in the original knock-port's README, sample config, test suite and scripts,
 * and in this project's own config.example.yaml, README and docs. Anyone can try them.
 */
export const PUBLISHED_PATHS = [
  // The original knock-port's.
  '/step-1',
  '/step-2',
  '/step-1-SECRET',
  '/step-2-SECRET',
  '/SECRET-1',
  '/SECRET-2',
  '/1-SECRET',
  '/2-SECRET',
  '/12345',
  '/67890',
  // This project's config.example.yaml.
  '/8f18837d44f4d73f4e0eafa2b40e16dc',
  '/de34caef460ed2b33c6de88beade586f',
  // This project's README: the demo's output and the placeholders of the client examples.
  '/knock-c564fc72abed',
  '/STEP1-PATH',
  '/STEP2-PATH',
  '/YOUR-STEP-2-PATH',
];

/** Keys published in the original knock-port and in this project's example config, README and docs. */
export const PUBLISHED_KEYS = [
  // The original knock-port's: its README, README.extended, config.yaml.dist (and its commented
  // mysql example, whose single keys now load as lists) and test suite.
  'test_secret_http',
  'test_secret2_http',
  'test_secret_https',
  'test_secret2_https',
  'secret123_http',
  'secret456_http',
  'secret123_https',
  'secret456_https',
  'secret789_http',
  'secret012_https',
  'invalidkey',
  'invalid_key',
  '1234567890',
  'K1',
  'K2',
  // This project's config.example.yaml (openvpn, ssh's alice, rdp), also in the README.
  '1f6612b5bc1996191745672119b4b5d6',
  '64927eeb562ed6a228f89d05b08b6bd9',
  'c12f9b6c988d1b28fe32f0754a3fe8cd',
  '6b161c6fa65960622b59d549fa689a98',
  '1ac6221c842379fe0f081e8b4b1dae43',
  'f51beb003717642ad33ce216c5703898',
  'd8fa3ca3a489e008fe667f74a1a778f5',
  'dc0d9fd5affa7e043e8f22fada8a3dc0',
  // This project's README: the demo's output and the placeholders of the client examples.
  'c407c81340169f40469082f53eb599c9',
  'STEP1-KEY',
  'STEP2-KEY',
];

/** Keys published only as `sha256:` digests (bob in config.example.yaml and the README): SHA-256, hex. */
export const PUBLISHED_KEY_DIGESTS = [
  'a7567973bc6d1ed99d563088d61db4a3589b9ed5e6c10829a542f17a3ec39b9b',
  'ce5f558ba454975b92c4807a47c85759fab779071d7e73a213b4ec31bcc19d35',
];

/** Cluster keys published in this project's docs (docs/cluster.md's example; global.cluster.key). */
export const PUBLISHED_CLUSTER_KEYS = ['15e9833b79ee2713999d24a633f89f0f362f73cc166c0aa72639c03630c54794'];

/** TOTP secrets published in this project's config.example.yaml and README (alice and bob). */
export const PUBLISHED_TOTP_SECRETS = ['RQALHPYNKR5U2C23PBH4V3KFEHVTUMQV', 'E77IDL63C75IXWQG2WFFARTX7B2VJO2Q'];

// Cluster keys are compared as digests too, in any letter case.
const publishedClusterKeyDigests = new Set(PUBLISHED_CLUSTER_KEYS.map((key) => digestKey(key.toLowerCase()).toString('hex')));
const publishedPathsLower = new Set(PUBLISHED_PATHS.map((path) => path.toLowerCase()));
// Digests, so a published key is recognised in clear or hashed, in any letter case.
const publishedKeyDigests = new Set([
  ...PUBLISHED_KEYS.flatMap((key) => [key, key.toLowerCase(), key.toUpperCase()]).map((key) => digestKey(key).toString('hex')),
  ...PUBLISHED_KEY_DIGESTS,
]);
// Digests too, compared on the normalized form (upper case, no spaces or padding), as keys are.
const publishedTotpDigests = new Set(PUBLISHED_TOTP_SECRETS.map((secret) => digestKey(normalizeTotpSecret(secret)).toString('hex')));

function normalizeTotpSecret(secret: string): string {
  return secret.replace(/[\s=]/g, '').toUpperCase();
}

export function isPublishedPath(path: string): boolean {
  return publishedPathsLower.has(path.toLowerCase());
}

export function isPublishedKey(digest: Buffer, clear?: string): boolean {
  return publishedKeyDigests.has(digest.toString('hex')) || (clear !== undefined && publishedKeyDigests.has(digestKey(clear.toLowerCase()).toString('hex')));
}

/** A base32 TOTP secret, in any letter case, spacing or padding. */
export function isPublishedTotpSecret(secret: string): boolean {
  return publishedTotpDigests.has(digestKey(normalizeTotpSecret(secret)).toString('hex'));
}

/** A cluster key that is published: as a cluster key, or as an access key or path (those are at most as secret). */
export function isPublishedClusterKey(key: string): boolean {
  return publishedClusterKeyDigests.has(digestKey(key.toLowerCase()).toString('hex')) || isPublishedKey(digestKey(key), key) || isPublishedPath(key);
}
