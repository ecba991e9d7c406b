/**
 * YAML parsing that can give the line and column of any key path, for config messages. Library
 * messages that would quote the text are reworded, since the text may be a key or a secret path.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import type { ConfigIssue, KeyPath } from './issues.js';

export interface Position {
  line: number;
  column: number;
}

/** A parsed YAML file that can say where any key path sits in the text. */
export interface YamlSource {
  data: unknown;
  /** Syntax errors (duplicate keys included); when non-empty, `data` must not be trusted. */
  syntaxIssues: ConfigIssue[];
  /** Position of the value at `path`, or of the nearest enclosing key when the value is a block or missing. */
  locate(path: KeyPath): Position | undefined;
  /** Position of the key naming the last segment of `path` (for unknown keys). */
  locateKey(path: KeyPath): Position | undefined;
}

export function parseYaml(text: string): YamlSource {
  const lineCounter = new LineCounter();
  // logLevel 'error': the library's own console warnings quote the text, which may hold a secret.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, logLevel: 'error' });
  const at = (node: Node | undefined): Position | undefined => {
    if (!node?.range) return undefined;
    const { line, col } = lineCounter.linePos(node.range[0]);
    return { line, column: col };
  };

  const walk = (path: KeyPath) => {
    let node: unknown = doc.contents;
    let keyNode: Node | undefined;
    let reached = 0;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
        if (!pair) break;
        keyNode = pair.key as Node;
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
        keyNode = undefined;
        node = node.items[segment];
      } else {
        break;
      }
      reached++;
    }
    return { node: node as Node | undefined, keyNode, complete: reached === path.length };
  };

  const syntaxIssues: ConfigIssue[] = [...doc.errors, ...doc.warnings].map((error) => {
    const position = error.linePos?.[0];
    return {
      path: '',
      ...(position ? { line: position.line, column: position.col } : {}),
      message: `YAML ${error.code === 'DUPLICATE_KEY' ? 'duplicate key' : 'syntax error'}: ${QUOTING_ERRORS[error.code] ?? firstLine(error.message)}`,
    };
  });
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    // An alias without its anchor, or too many aliases; the library's message names the alias.
    const alias = err instanceof ReferenceError;
    syntaxIssues.push({ path: '', message: `YAML syntax error: ${alias ? QUOTING_ERRORS.BAD_ALIAS : 'too many aliases'}` });
  }

  return {
    data,
    syntaxIssues,
    locate(path) {
      const { node, keyNode, complete } = walk(path);
      if (complete && (isScalar(node) || (!isMap(node) && !isSeq(node)))) return at(node) ?? at(keyNode);
      return at(keyNode) ?? at(node);
    },
    locateKey(path) {
      const { node, keyNode, complete } = walk(path);
      return complete ? (at(keyNode) ?? at(node)) : this.locate(path);
    },
  };
}

/**
 * Errors whose library message quotes what was written (a tag, an alias name, an escape): said
 * without it, since the value may be a key or a path. Quoting the value avoids all three.
 */
const QUOTING_ERRORS: Partial<Record<string, string>> = {
  TAG_RESOLVE_FAILED: "unknown tag (a value starting with '!' is a YAML tag: put it in quotes)",
  BAD_ALIAS: "unknown alias (a value starting with '*' is a YAML alias: put it in quotes)",
  BAD_DQ_ESCAPE: "invalid escape sequence in double quotes (use single quotes, where '\\' is a plain backslash)",
};

/** The yaml library appends a source excerpt after the first line; our format gives line and column instead. */
function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}
