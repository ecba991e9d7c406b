/**
 * `npm run docs:generate`: writes the man pages and the config reference tables of the manual
 * from the code (the config schema, the command tree), and the shell completions. `--check` writes nothing and exits 1
 * naming each file that is out of date; a unit test does the same.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../main.js';
import { clientManPage, programManPage } from './command-pages.js';
import { bashCompletion, zshCompletion } from './completions.js';
import { configManPage, withConfigTables } from './config-pages.js';

/** A generated file: its path from the repository root, and its text made from what is there now. */
export interface GeneratedFile {
  path: string;
  render(current: string): string;
}

/** Where the man pages live in the repository; the package installs them from here. */
export const MAN_DIR = 'packaging/man';

export function generatedFiles(): GeneratedFile[] {
  const program = buildProgram();
  return [
    { path: `${MAN_DIR}/knock-port.8`, render: () => programManPage(program) },
    { path: `${MAN_DIR}/knock-port-knock.1`, render: () => clientManPage(program) },
    { path: `${MAN_DIR}/knock-port.yaml.5`, render: () => configManPage() },
    { path: 'docs/manual/configuration.md', render: withConfigTables },
    { path: 'docs/manual/cluster.md', render: withConfigTables },
    { path: 'packaging/completions/knock-port.bash', render: () => bashCompletion(program) },
    { path: 'packaging/completions/_knock-port', render: () => zshCompletion(program) },
  ];
}

/** The files under `root` whose text differs from what the code makes now. */
export function outOfDate(root: string): string[] {
  return generatedFiles()
    .filter((file) => {
      const current = readOrEmpty(`${root}/${file.path}`);
      return file.render(current) !== current;
    })
    .map((file) => file.path);
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function main(argv: readonly string[]): number {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  if (argv.includes('--check')) {
    const stale = outOfDate(root);
    for (const path of stale) process.stderr.write(`${path} is out of date: run npm run docs:generate\n`);
    return stale.length > 0 ? 1 : 0;
  }
  for (const file of generatedFiles()) writeFileSync(`${root}/${file.path}`, file.render(readOrEmpty(`${root}/${file.path}`)));
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
