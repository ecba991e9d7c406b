/**
 * `--help` stays fast: building the command tree (every command, option and example, and each
 * command's help) loads no config loader, schema, logger, cluster store or native addon; each
 * command loads those when it runs. The test watches what a fresh process loads (module hooks,
 * test/helpers/module-graph.mjs), so a heavy import added back at the top of a command fails it.
 * The timing itself is in docs/benchmarks.md (bench/help.js), not asserted here.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Packages and modules only a running command needs. */
const HEAVY = [
  /\/node_modules\/(zod|yaml|pino|ioredis|prom-client|qrcode)\//,
  /\.node$/,
  /\/src\/(daemon\.ts|config\/load\.ts|config\/schema\.ts|shared\/log\.ts|native\/|cluster\/|metrics\/|firewall\/)/,
];

/** Every module a fresh node loads for `load-modules.mjs [--tree] src/FILE...`: ESM URLs and require()d paths. */
async function modulesLoaded(files: string[], tree: boolean): Promise<string[]> {
  const urls = files.map((file) => pathToFileURL(`${ROOT}${file}`).href);
  const { stderr } = await promisify(execFile)(
    process.execPath,
    ['--import', './test/helpers/module-graph.mjs', './test/helpers/load-modules.mjs', ...(tree ? ['--tree'] : []), ...urls],
    { cwd: ROOT, timeout: 50_000 },
  );
  return stderr
    .split('\n')
    .filter((line) => /^(LOADED|REQUIRED) /.test(line))
    .map((line) => line.replace(/^\w+ (file:\/\/)?/, ''));
}

const heavy = (modules: string[]) => modules.filter((module) => HEAVY.some((pattern) => pattern.test(module)));

describe('the command tree loads only what --help needs', () => {
  it('builds every command and its help without a heavy module; a command action still loads them (the check can see them)', async () => {
    const [tree, action] = await Promise.all([
      modulesLoaded(['src/cli/main.ts'], true),
      // What the actions import: the config loader and the logger.
      modulesLoaded(['src/cli/resolve-options.ts', 'src/shared/log.ts'], false),
    ]);
    expect(tree.some((module) => module.endsWith('/src/cli/commands/run.ts'))).toBe(true);
    expect(heavy(tree)).toEqual([]);
    // The same hooks see them when an action's modules load: zod and yaml (ESM), pino (CommonJS).
    const seen = heavy(action).join('\n');
    for (const name of ['/node_modules/zod/', '/node_modules/yaml/', '/node_modules/pino/', '/src/config/load.ts']) expect(seen).toContain(name);
  }, 60_000);
});
