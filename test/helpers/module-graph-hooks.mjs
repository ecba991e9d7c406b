// Module hooks (node --import ./test/helpers/module-graph.mjs) that run src/ as TypeScript,
// transpiled file by file as tsc emits it (type-only imports dropped), and report every module
// loaded: one `LOADED <url>` line on stderr each. The native addon and the CommonJS inside
// packages load through require(), which these hooks do not see: module-graph.mjs lists those.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const COMPILER_OPTIONS = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false };

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    // src/ imports its siblings by the name tsc gives them: foo.js for foo.ts.
    if (!specifier.endsWith('.js') || !context.parentURL?.endsWith('.ts')) throw err;
    return next(`${specifier.slice(0, -3)}.ts`, context);
  }
}

export async function load(url, context, next) {
  process.stderr.write(`LOADED ${url}\n`);
  if (!url.endsWith('.ts')) return next(url, context);
  const source = readFileSync(fileURLToPath(url), 'utf8');
  const output = ts.transpileModule(source, { compilerOptions: COMPILER_OPTIONS, fileName: fileURLToPath(url) }).outputText;
  return { format: 'module', source: output, shortCircuit: true };
}
