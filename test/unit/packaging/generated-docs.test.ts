import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configReference } from '../../../src/config/schema-doc.js';
import { generatedFiles, outOfDate } from '../../../src/cli/docs/generate.js';
import { configManPage, withConfigTables } from '../../../src/cli/docs/config-pages.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('documentation generated from the code', () => {
  it('the man pages and the manual config tables match the schema and the command tree (else: npm run docs:generate)', () => {
    expect(outOfDate(ROOT)).toEqual([]);
  });

  it('notices a stale file: a man page that lacks a key is out of date, and a config table is made again in full', () => {
    const root = mkdtempSync(join(tmpdir(), 'knock-port-docs-'));
    try {
      for (const file of generatedFiles()) {
        mkdirSync(dirname(join(root, file.path)), { recursive: true });
        writeFileSync(join(root, file.path), readFileSync(join(ROOT, file.path), 'utf8'));
      }
      const page = join(root, 'packaging/man/knock-port.yaml.5');
      writeFileSync(page, readFileSync(page, 'utf8').replace(/^\.TP\n\\fBlockout_seconds\\fR.*\n.*\n/m, ''));
      expect(outOfDate(root)).toEqual(['packaging/man/knock-port.yaml.5']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    const table = '<!-- generated: config global -->\n| old |\n<!-- end generated -->';
    expect(withConfigTables(table)).toContain('| `lockout_seconds` | integer 1-86400 | `900` |');
  });

  it('every key of every section has a description and an example in the schema', () => {
    const undocumented = configReference().flatMap((section) =>
      section.keys.filter((key) => key.description === '' || key.example === undefined).map((key) => `${section.path}.${key.key}`),
    );
    expect(undocumented).toEqual([]);
  });

  it('the man page gives each key its type and default as the schema has them', () => {
    const page = configManPage();
    expect(page).toContain('\\fBhttp_port\\fR (integer 1\\-65535; default: \\fB80\\fR)');
    expect(page).toContain('\\fBinterface_ext\\fR (interface name; required)');
    expect(page).toContain('\\fBtls_cert\\fR (absolute path; optional)');
    expect(page).toContain('\\fBcapture\\fR (one of auto, nfqueue, nflog; default: \\fBauto\\fR)');
  });
});
