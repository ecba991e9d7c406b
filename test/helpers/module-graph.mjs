// `node --import ./test/helpers/module-graph.mjs FILE.mjs`: registers module-graph-hooks.mjs
// and, when the process exits, prints what require() loaded (`REQUIRED <path>` on stderr).
import { createRequire, register } from 'node:module';

register('./module-graph-hooks.mjs', import.meta.url);
const { cache } = createRequire(import.meta.url);
process.on('exit', () => {
  for (const path of Object.keys(cache)) process.stderr.write(`REQUIRED ${path}\n`);
});
