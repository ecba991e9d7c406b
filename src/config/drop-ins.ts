/**
 * Config drop-ins: `conf.d/*.yaml`, then `users.d/*.yaml`, next to the config file, each read in
 * name order and merged into it. A drop-in adds keys to `global`, whole apps, or users to an app
 * defined elsewhere; setting what another file already sets is an error naming both files. Every
 * merged value remembers the file and the path it came from, so that each problem found later
 * (schema, policy) is reported at its own file and line.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { explainReadError } from '../shared/read-error.js';
import { formatKeyPath, type ConfigIssue, type KeyPath, type PathIssue } from './issues.js';
import { parseYaml, type Position, type YamlSource } from './yaml-source.js';

/** The drop-in folders, in the order they are read. */
export const DROP_IN_FOLDERS = ['conf.d', 'users.d'] as const;

export interface SourceFile {
  file: string;
  text: string;
}

/** Where a merged value came from: the file, and its path in that file. */
interface Mount {
  at: KeyPath;
  file: string;
  yaml: YamlSource;
  from: KeyPath;
}

export interface Located extends Position {
  file: string;
}

/** The merged files: the data, the problems met while reading and merging, and where any path came from. */
export interface MergedYaml {
  data: unknown;
  issues: ConfigIssue[];
  /** The drop-in files read, in order. */
  dropIns: string[];
  locate(issue: PathIssue): ConfigIssue;
}

/** The drop-in files of the config at `configPath`, in the order they apply; a missing folder has none. */
export function dropInFiles(configPath: string): { files: SourceFile[]; issues: ConfigIssue[] } {
  const files: SourceFile[] = [];
  const issues: ConfigIssue[] = [];
  for (const folder of DROP_IN_FOLDERS.map((name) => join(dirname(configPath), name))) {
    let names: string[];
    try {
      names = readdirSync(folder).filter((name) => name.endsWith('.yaml'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      issues.push({ path: '', file: folder, message: `cannot read the drop-in folder: ${explainReadError(err, folder)}` });
      continue;
    }
    for (const name of names.sort()) {
      const file = join(folder, name);
      try {
        files.push({ file, text: readFileSync(file, 'utf8') });
      } catch (err) {
        issues.push({ path: '', file, message: `cannot read the drop-in: ${explainReadError(err, file)}` });
      }
    }
  }
  return { files, issues };
}

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Parses the main file and its drop-ins and merges them, the main file first. */
export function mergeFiles(main: SourceFile, dropIns: readonly SourceFile[]): MergedYaml {
  const mainYaml = parseYaml(main.text);
  const issues = [...mainYaml.syntaxIssues];
  const mounts: Mount[] = [{ at: [], file: main.file, yaml: mainYaml, from: [] }];
  const data: unknown = isMapping(mainYaml.data) ? { ...mainYaml.data } : mainYaml.data;
  const owners = new Map<string, string>();
  if (isMapping(data)) for (const key of Object.keys(data)) owners.set(key, main.file);

  for (const dropIn of dropIns) {
    const yaml = parseYaml(dropIn.text);
    const at = (path: KeyPath): ConfigIssue => locateIn(yaml, dropIn.file, path, true);
    if (yaml.syntaxIssues.length > 0) {
      issues.push(...yaml.syntaxIssues.map((issue) => ({ ...issue, file: dropIn.file })));
      continue;
    }
    if (yaml.data === null || yaml.data === undefined) continue;
    if (!isMapping(yaml.data) || !isMapping(data)) {
      issues.push({ path: '', file: dropIn.file, message: 'expected a mapping of sections, as in the config file (global keys, apps, or users of an app)' });
      continue;
    }
    const add = (mergedPath: KeyPath, fromPath: KeyPath) => mounts.push({ at: mergedPath, file: dropIn.file, yaml, from: fromPath });
    for (const [section, value] of Object.entries(yaml.data)) {
      if (!(section in data)) {
        data[section] = section === 'global' && isMapping(value) ? { ...value } : value;
        owners.set(section, dropIn.file);
        add([section], [section]);
        if (section === 'global' && isMapping(value)) for (const key of Object.keys(value)) owners.set(`global.${key}`, dropIn.file);
        continue;
      }
      if (!isMapping(value) || !isMapping(data[section])) {
        issues.push({ ...at([section]), message: `${section} is already defined in ${owners.get(section) ?? main.file}` });
        continue;
      }
      const target = { ...data[section] };
      data[section] = target;
      for (const [key, inner] of Object.entries(value)) {
        if (section !== 'global' && key === 'users' && Array.isArray(inner)) {
          const existing: unknown[] = Array.isArray(target.users) ? (target.users as unknown[]) : [];
          const added = inner as unknown[];
          target.users = [...existing, ...added];
          added.forEach((_user, index) => add([section, 'users', existing.length + index], [section, 'users', index]));
          continue;
        }
        if (section !== 'global') {
          issues.push({
            ...at([section, key]),
            message: `app ${section} is defined in ${owners.get(section) ?? main.file}: a drop-in adds users to it, not its ${key}`,
          });
          continue;
        }
        if (key in target) {
          issues.push({
            ...at([section, key]),
            message: `global.${key} is already set in ${owners.get(`global.${key}`) ?? owners.get('global') ?? main.file}`,
          });
          continue;
        }
        target[key] = inner;
        owners.set(`${section}.${key}`, dropIn.file);
        add([section, key], [section, key]);
      }
    }
  }

  return {
    data,
    issues,
    dropIns: dropIns.map((dropIn) => dropIn.file),
    locate(issue) {
      const mount = mountOf(mounts, issue.path);
      const fromPath = [...mount.from, ...issue.path.slice(mount.at.length)];
      const { line, column } = locateIn(mount.yaml, mount.file, fromPath, issue.atKey === true);
      // The message names the merged path (what the loader saw), the position the file's own;
      // the config file itself goes unnamed, as before drop-ins existed.
      return {
        path: formatKeyPath(issue.path),
        ...(line !== undefined ? { line, column } : {}),
        message: issue.message,
        ...(mount.file === main.file ? {} : { file: mount.file }),
      };
    },
  };
}

/** The mount with the longest `at` that starts `path`: the file the value at `path` came from. */
function mountOf(mounts: readonly Mount[], path: KeyPath): Mount {
  let best = mounts[0]!;
  for (const mount of mounts) {
    if (mount.at.length > best.at.length && mount.at.length <= path.length && mount.at.every((segment, i) => segment === path[i])) best = mount;
  }
  return best;
}

function locateIn(yaml: YamlSource, file: string, path: KeyPath, atKey: boolean): ConfigIssue {
  const position = atKey ? yaml.locateKey(path) : yaml.locate(path);
  return { path: formatKeyPath(path), file, ...(position ? { line: position.line, column: position.column } : {}), message: '' };
}

/** `users.d/alice.yaml`: a drop-in's name relative to the config's folder, for summaries. */
export function dropInLabel(file: string): string {
  return join(basename(dirname(file)), basename(file));
}
