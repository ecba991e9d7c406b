/**
 * Golden files (test/unit/firewall/golden/): the reviewed text of each generated ruleset. A
 * missing file fails like a changed one: a test that wrote its own expectation would pass on
 * whatever the code produces. After an intended change, regenerate and review the diff:
 *
 *     KNOCKPORT_UPDATE_GOLDEN=1 npx vitest run test/unit/firewall
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), 'golden');
const UPDATE = process.env.KNOCKPORT_UPDATE_GOLDEN === '1';
const REGENERATE = 'KNOCKPORT_UPDATE_GOLDEN=1 npx vitest run test/unit/firewall';

/** `actual` equals golden/`name`; with KNOCKPORT_UPDATE_GOLDEN=1 it is written there first. */
export function matchGolden(name: string, actual: string): void {
  const file = join(GOLDEN_DIR, name);
  if (UPDATE) writeFileSync(file, actual);
  if (!existsSync(file)) throw new Error(`golden file ${file} is missing: generate it with \`${REGENERATE}\`, review it and commit it`);
  expect(actual, `differs from ${file} (after an intended change: \`${REGENERATE}\`, then review the diff)`).toBe(readFileSync(file, 'utf8'));
}
