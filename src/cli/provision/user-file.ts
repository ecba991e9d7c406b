/**
 * Adding a user to a config (fresh keys, stored as digests in a drop-in `users.d/NAME.yaml` or in
 * the config file itself) and removing one (wherever its `users:` entries are), each checked by
 * loading the whole config again; on any problem the files are put back as they were.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isMap, parseDocument, YAMLMap, YAMLSeq } from 'yaml';
import { newTotpSecret } from '../../auth/totp.js';
import { hashedKeyString } from '../../config/key-digest.js';
import { loadConfigFile } from '../../config/load.js';
import { USER_NAME } from '../../config/names.js';
import type { Config } from '../../config/types.js';
import { KnockUsageError } from '../../client/errors.js';

/** A new user's secrets, in clear: shown once, in the client bundle. */
export interface NewUserSecrets {
  step1Key: string;
  step2Key: string;
  totpSecret?: string;
}

export interface AddUserRequest {
  configPath: string;
  name: string;
  app: string;
  totp: boolean;
  /** Write into the config file itself instead of users.d/NAME.yaml. */
  inConfig: boolean;
}

/** 128 random bits as hex: what `openssl rand -hex 16` makes, as the manual advises. */
export function randomKey(): string {
  return randomBytes(16).toString('hex');
}

/** A request path of 128 random bits. */
export function randomPath(): string {
  return `/${randomKey()}`;
}

export function userDropInPath(configPath: string, name: string): string {
  return join(dirname(configPath), 'users.d', `${name}.yaml`);
}

/** The apps a user may be added to, and their users' names. */
export type KnownApps = Pick<Config, 'source'> & { apps: readonly { name: string; users: readonly { name: string }[] }[] };

/** Adds the user and returns its secrets and the config as loaded with it; throws, changing nothing, when that fails. */
export function addUser(request: AddUserRequest, config: KnownApps): { secrets: NewUserSecrets; file: string; config: Config } {
  if (!USER_NAME.test(request.name)) throw new KnockUsageError(`user name '${request.name}': expected a letter or digit then up to 63 of A-Z a-z 0-9 _ . @ -`);
  const app = config.apps.find((candidate) => candidate.name === request.app);
  if (!app) throw new KnockUsageError(`no app '${request.app}' in ${config.source} (apps: ${config.apps.map((a) => a.name).join(', ') || 'none'})`);
  if (app.users.some((user) => user.name === request.name)) throw new KnockUsageError(`app ${request.app} already has a user ${request.name}`);
  const secrets: NewUserSecrets = { step1Key: randomKey(), step2Key: randomKey(), ...(request.totp ? { totpSecret: newTotpSecret() } : {}) };
  const entry = {
    name: request.name,
    access_key_http: hashedKeyString(secrets.step1Key),
    access_key_https: hashedKeyString(secrets.step2Key),
    ...(secrets.totpSecret ? { totp_secret: secrets.totpSecret } : {}),
  };
  const file = request.inConfig ? request.configPath : userDropInPath(request.configPath, request.name);
  const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  writeProtected(file, withUser(before, request.app, entry, request.name), request.configPath);
  try {
    return { secrets, file, config: loadConfigFile(request.configPath) };
  } catch (err) {
    if (before === undefined) rmSync(file, { force: true });
    else writeFileSync(file, before);
    throw err;
  }
}

/** The YAML text with the user appended to the app's users (the file's comments kept). */
function withUser(text: string | undefined, app: string, entry: Record<string, string>, name: string): string {
  const header = `# User ${name}, added by knock-port user add; keys as digests (the client holds the keys).\n`;
  const doc = parseDocument(text ?? header);
  if (doc.errors.length > 0) throw new KnockUsageError(`cannot add to a file that is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]!}`);
  const users = doc.getIn([app, 'users']);
  if (users instanceof YAMLSeq) users.add(doc.createNode(entry));
  else doc.setIn([app, 'users'], doc.createNode([entry]));
  return doc.toString();
}

/**
 * Writes a file that holds secrets (TOTP secrets are in clear): mode 0640 and the config's group,
 * so the daemon's user reads it and no other user does.
 */
export function writeProtected(file: string, text: string, configPath: string): void {
  const newFolder = !existsSync(dirname(file));
  mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
  writeFileSync(file, text, { mode: 0o640 });
  protectLike(file, configPath);
  if (newFolder) protectLike(dirname(file), configPath, 0o750);
}

/** Mode `mode` and, as root, the owner and group of the config (root:knock-port once the package set it up). */
export function protectLike(path: string, configPath: string, mode = 0o640): void {
  chmodSync(path, mode);
  if (process.getuid?.() !== 0 || !existsSync(configPath)) return;
  const owner = statSync(configPath);
  chownSync(path, owner.uid, owner.gid);
}

export interface RemoveUserRequest {
  configPath: string;
  name: string;
  /** Only this app's entry; else every app's. */
  app?: string;
}

/** A user removed: from which apps, the files changed and those deleted (a drop-in left empty). */
export interface RemovedUser {
  apps: string[];
  edited: string[];
  deleted: string[];
  config: Config;
}

/** One file's text before and after the removal; `after` undefined: the file is deleted. */
interface FileChange {
  file: string;
  before: string;
  after: string | undefined;
}

/**
 * Removes the user's `users:` entries (in the config or any drop-in), deleting a drop-in left
 * empty, and returns the config as loaded without it; throws, changing nothing, when the user is
 * unknown, is a pair of the original's key lists, or the config would not load without it.
 */
export function removeUser(request: RemoveUserRequest, config: Pick<Config, 'source' | 'apps' | 'dropIns'>): RemovedUser {
  const apps = appsOfUser(request, config);
  const changes: FileChange[] = [];
  const found = new Set<string>();
  for (const file of [request.configPath, ...(config.dropIns ?? [])]) {
    const change = withoutUser(file, request.name, apps, file !== request.configPath, found);
    if (change) changes.push(change);
  }
  const listed = apps.filter((app) => !found.has(app));
  if (listed.length > 0) {
    throw new KnockUsageError(
      `user ${request.name} of app ${listed[0]!} is a pair of its access_key_http/access_key_https lists, not a users: entry: remove that pair from the lists by hand`,
    );
  }
  for (const change of changes) applyChange(change);
  try {
    return {
      apps,
      edited: changes.filter((change) => change.after !== undefined).map((change) => change.file),
      deleted: changes.filter((change) => change.after === undefined).map((change) => change.file),
      config: loadConfigFile(request.configPath),
    };
  } catch (err) {
    // A deleted drop-in comes back as user add writes one: it may hold a TOTP secret in clear.
    for (const change of changes) {
      if (change.after === undefined) writeProtected(change.file, change.before, request.configPath);
      else writeFileSync(change.file, change.before);
    }
    throw new KnockUsageError(`without ${request.name} the config would not load, so nothing was changed: ${(err as Error).message}`);
  }
}

/** The apps the user is removed from; an unknown app or user is a usage error. */
function appsOfUser(request: RemoveUserRequest, config: Pick<Config, 'source' | 'apps'>): string[] {
  if (request.app !== undefined && !config.apps.some((app) => app.name === request.app)) {
    throw new KnockUsageError(`no app '${request.app}' in ${config.source} (apps: ${config.apps.map((a) => a.name).join(', ') || 'none'})`);
  }
  const apps = config.apps.filter((app) => (request.app === undefined || app.name === request.app) && app.users.some((user) => user.name === request.name));
  if (apps.length > 0) return apps.map((app) => app.name);
  const scope = request.app === undefined ? '' : ` app ${request.app}`;
  const names = [...new Set(config.apps.flatMap((app) => (request.app === undefined || app.name === request.app ? app.users.map((u) => u.name) : [])))];
  throw new KnockUsageError(`no user '${request.name}' in ${config.source}${scope} (users: ${names.join(', ') || 'none'})`);
}

/**
 * The file without the user's entries in `apps` (their comments kept), or undefined when it has
 * none; a drop-in left with no section is deleted. Notes in `found` the apps it had entries in.
 */
function withoutUser(file: string, name: string, apps: readonly string[], dropIn: boolean, found: Set<string>): FileChange | undefined {
  const before = readFileSync(file, 'utf8');
  const doc = parseDocument(before);
  let removed = false;
  for (const app of apps) {
    const users = doc.getIn([app, 'users']);
    if (!(users instanceof YAMLSeq)) continue;
    const kept = users.items.filter((item) => !(isMap(item) && item.get('name') === name));
    if (kept.length === users.items.length) continue;
    found.add(app);
    removed = true;
    users.items = kept;
    if (kept.length === 0) doc.deleteIn([app, 'users']);
    if (dropIn && isEmptyMap(doc.getIn([app]))) doc.deleteIn([app]);
  }
  if (!removed) return undefined;
  return { file, before, after: dropIn && isEmptyMap(doc.contents) ? undefined : doc.toString() };
}

function isEmptyMap(node: unknown): boolean {
  return node instanceof YAMLMap && node.items.length === 0;
}

function applyChange(change: FileChange): void {
  if (change.after === undefined) rmSync(change.file);
  else writeFileSync(change.file, change.after);
}
