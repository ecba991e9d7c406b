/**
 * The sessions file in state_dir: validated on read (corrupt files are set aside, not trusted)
 * and replaced atomically on write; its atomic write is also used for the used-codes file.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { KnockPortError } from '../shared/errors.js';
import { canonicalIp } from '../shared/ip.js';
import type { SessionRecord } from './record.js';

export const STATE_FILE_NAME = 'sessions.json';

export class SessionStateError extends KnockPortError {}

const recordSchema = z.object({
  ip: z.string().refine((ip) => canonicalIp(ip) === ip, 'not a canonical IP address'),
  app: z.string().min(1).nullable(),
  user: z.string().min(1).nullable(),
  step: z.enum(['step2', 'service']),
  expiresAt: z.iso.datetime(),
  gateway: z.string().min(1).optional(),
});

const fileSchema = z.object({ version: z.literal(1), sessions: z.array(recordSchema) });

export type StateFileContent = { kind: 'missing' } | { kind: 'ok'; records: SessionRecord[] } | { kind: 'corrupt'; reason: string };

/** Pure: the file's text to records, or why it cannot be trusted. */
export function parseStateFile(text: string): StateFileContent {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { kind: 'corrupt', reason: `not JSON (${(err as Error).message})` };
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: 'corrupt', reason: `unexpected content at ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}` };
  }
  return {
    kind: 'ok',
    records: parsed.data.sessions.map(({ gateway, ...r }) => ({ ...r, expiresAt: Date.parse(r.expiresAt), ...(gateway !== undefined ? { gateway } : {}) })),
  };
}

export function serializeStateFile(records: readonly SessionRecord[]): string {
  const sessions = records.map((r) => ({
    ip: r.ip,
    app: r.app,
    user: r.user,
    step: r.step,
    expiresAt: new Date(r.expiresAt).toISOString(),
    ...(r.gateway !== undefined ? { gateway: r.gateway } : {}),
  }));
  return `${JSON.stringify({ version: 1, sessions }, null, 2)}\n`;
}

export async function readStateFile(path: string): Promise<StateFileContent> {
  const text = await readTextFile(path, 'session state file');
  return text === undefined ? { kind: 'missing' } : parseStateFile(text);
}

/** A state file's text; undefined when it does not exist. Throws SessionStateError naming `what` and the path. */
export async function readTextFile(path: string, what: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SessionStateError(`cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Renames a corrupt state file aside (kept for inspection); returns the new path. */
export async function setAside(path: string, now: Date): Promise<string> {
  const aside = `${path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
  await rename(path, aside);
  return aside;
}

export async function writeStateFile(path: string, records: readonly SessionRecord[]): Promise<void> {
  await writeFileAtomically(path, serializeStateFile(records), 'session state file');
}

/**
 * Atomic replace: write a temporary file (mode 0600), fsync it, rename it over the old one,
 * fsync the directory so the rename itself survives a power cut. Readers see the old or the
 * new file. Throws SessionStateError naming `what` and the path.
 */
export async function writeFileAtomically(path: string, text: string, what: string): Promise<void> {
  const dir = dirname(path);
  const temporary = `${path}.tmp-${process.pid}`;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw new SessionStateError(`cannot write the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  const directory = await open(dir, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}
