// The /etc/knock-port/config.yaml the Debian package installs: config.example.yaml (argv[2]) with
// every secret path, key and TOTP secret replaced by a placeholder that `knock-port check` refuses,
// so the service cannot start before the operator has made their own. Comments are kept.
// Usage: node example-config.mjs config.example.yaml > config.yaml
import { readFileSync } from 'node:fs';
import { isScalar, isSeq, parseDocument, visit } from 'yaml';

/** '/' alone: check refuses it ("not a secret path; add random characters"). */
const PATH_PLACEHOLDER = '/';
/** Shorter than the 10 characters check asks of a key, and not base32 for a TOTP secret. */
const SECRET_PLACEHOLDER = 'CHANGE-ME';
const PATHS = new Set(['http_post_path', 'https_post_path']);
const SECRETS = new Set(['access_key_http', 'access_key_https', 'totp_secret', 'step1_otp_secret']);

const source = process.argv[2];
if (!source) throw new Error('usage: node example-config.mjs config.example.yaml');
const doc = parseDocument(readFileSync(source, 'utf8'));
if (doc.errors.length > 0) throw doc.errors[0];

// Splice the placeholders into the original text, so its layout and comments stay as they are.
const ranges = [];
const replace = (node, value) => {
  if (isScalar(node) && node.range) ranges.push({ start: node.range[0], end: node.range[1], value });
  else if (isSeq(node)) for (const item of node.items) replace(item, value);
};
visit(doc, {
  Pair(_, pair) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (PATHS.has(key)) replace(pair.value, PATH_PLACEHOLDER);
    else if (SECRETS.has(key)) replace(pair.value, SECRET_PLACEHOLDER);
  },
});
const replaced = ranges.length;
let text = readFileSync(source, 'utf8');
for (const { start, end, value } of ranges.sort((a, b) => b.start - a.start)) {
  // Keep the original's alignment of a trailing comment where the placeholder is shorter.
  const old = text.slice(start, end);
  text = text.slice(0, start) + value.padEnd(text[end] === ' ' ? old.length : 0) + text.slice(end);
}
if (replaced === 0) throw new Error(`${source}: no secret found to replace`);

const header = [
  '# Installed by the knock-port Debian package. Every secret path, key and TOTP secret below is a',
  `# placeholder ('${PATH_PLACEHOLDER}' and ${SECRET_PLACEHOLDER}) that knock-port check refuses: the service cannot start until you`,
  '# replace them all with your own, then: knock-port check -c /etc/knock-port/config.yaml',
  '#',
];
process.stdout.write([...header, text].join('\n'));
