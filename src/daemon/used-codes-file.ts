/**
 * `<state_dir>/used-codes.json`: the one-time codes already accepted (a digest of their secret,
 * their time step and until when they matter), next to the session state file and written the
 * same atomic way. Loaded on start, so a restart does not make a sniffed `otp` knock or step-2
 * `token` usable again inside its window. Each accepted code is saved at once, not batched: the
 * file must not lag behind a kill -9 by more than one write.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { MAX_USED_CODES, UsedCodes, type UsedCode, type UsedCodeStore } from '../auth/used-codes.js';
import { TOTP_PERIOD_SECONDS } from '../shared/otp-format.js';
import type { Logger } from '../shared/log.js';
import { readTextFile, setAside, writeFileAtomically } from '../sessions/state-file.js';
import { errorFields } from '../shared/errors.js';

export const USED_CODES_FILE_NAME = 'used-codes.json';

const codeSchema = z.object({
  scope: z.string().regex(/^[0-9a-f]{32}$/, 'not a secret digest'),
  counter: z.int().min(0),
  expiresAt: z.iso.datetime(),
});

const fileSchema = z.object({ version: z.literal(1), codes: z.array(codeSchema) });

export type UsedCodesFileContent = { kind: 'ok'; codes: UsedCode[] } | { kind: 'corrupt'; reason: string };

/** Pure: the file's text to codes (expiry in unix seconds), or why it cannot be trusted. */
export function parseUsedCodesFile(text: string): UsedCodesFileContent {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'corrupt', reason: 'not JSON' };
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: 'corrupt', reason: `unexpected content at ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}` };
  }
  return { kind: 'ok', codes: parsed.data.codes.map((code) => ({ ...code, expiresAt: Date.parse(code.expiresAt) / 1000 })) };
}

export function serializeUsedCodesFile(codes: readonly UsedCode[]): string {
  const entries = codes.map((code) => ({ scope: code.scope, counter: code.counter, expiresAt: new Date(code.expiresAt * 1000).toISOString() }));
  return `${JSON.stringify({ version: 1, codes: entries })}\n`;
}

export interface SavedUsedCodesOptions {
  stateDir: string;
  logger: Logger;
  /** Milliseconds since the epoch. */
  now?: () => number;
  maxEntries?: number;
  /** Called when a code is refused because the cache is full. */
  onFull?: () => void;
  /** Where the codes live (default: this thread's memory); the daemon's is shared with its step-1 workers. */
  store?: UsedCodeStore;
}

/** The daemon's used-code cache, restored from and saved to `<state_dir>/used-codes.json`. */
export class SavedUsedCodes {
  readonly codes: UsedCodes;
  readonly path: string;
  private readonly logger: Logger;
  private readonly now: () => number;
  private dirty = false;
  private closed = false;
  private scheduled = false;
  private writing: Promise<void> | undefined;
  private claimed: ((code: UsedCode) => void) | undefined;

  private constructor(options: SavedUsedCodesOptions) {
    this.path = join(options.stateDir, USED_CODES_FILE_NAME);
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.codes = new UsedCodes({
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.store !== undefined ? { store: options.store } : {}),
      onChange: (code) => {
        this.changed();
        this.claimed?.(code);
      },
      onFull: () => {
        this.logger.error(
          { max: options.maxEntries ?? MAX_USED_CODES },
          'one-time code refused: the used-code cache is full (too many codes accepted within 90 s)',
        );
        options.onFull?.();
      },
    });
  }

  /**
   * Loads the saved codes, dropping expired ones. A file that cannot be trusted (corrupt, set
   * aside, or unreadable) is logged, and every code of the current time steps is then refused
   * for about 90 s: one of them may have been used just before the restart.
   */
  static async open(options: SavedUsedCodesOptions): Promise<SavedUsedCodes> {
    const saved = new SavedUsedCodes(options);
    const nowSeconds = saved.now() / 1000;
    let problem: string | undefined;
    try {
      const text = await readTextFile(saved.path, 'used-code file');
      if (text !== undefined) {
        const content = parseUsedCodesFile(text);
        if (content.kind === 'ok') {
          const restored = saved.codes.restore(content.codes, nowSeconds);
          saved.logger.info({ restored, file: saved.path }, 'used one-time codes restored');
        } else {
          const aside = await setAside(saved.path, new Date(saved.now()));
          problem = `used-code file is corrupt (${content.reason}); set aside as ${aside}`;
        }
      }
    } catch (err) {
      problem = (err as Error).message;
    }
    if (problem !== undefined) {
      // The verifier accepts codes up to one time step ahead, so this covers every code that may have been used.
      saved.codes.refuseThrough(Math.floor(nowSeconds / TOTP_PERIOD_SECONDS) + 1);
      saved.logger.error({ file: saved.path, problem }, 'used one-time codes unknown: every one-time code is refused for the next 90 s');
    }
    return saved;
  }

  /** Writes pending changes now (a failed write is logged and retried on the next change). */
  async flush(): Promise<void> {
    await this.save();
  }

  /** Final write on a clean stop; nothing is written afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await this.save();
  }

  /** `listener` hears of every code accepted in this thread (step 2), e.g. to share it with the cluster. */
  onClaimed(listener: (code: UsedCode) => void): void {
    this.claimed = listener;
  }

  /** A code another gateway accepted: used here too (in the shared store, so for step 1 as well), and saved. */
  markUsedElsewhere(code: UsedCode): boolean {
    const added = this.codes.markUsed(code, this.now() / 1000);
    if (added) this.changed();
    return added;
  }

  /** A code was claimed elsewhere (a step-1 worker thread) in the shared store: save soon. */
  changed(): void {
    this.dirty = true;
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.save();
    });
  }

  /** One write at a time; a change during a write is picked up by the next one. */
  private async save(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    const text = serializeUsedCodesFile(this.codes.list(this.now() / 1000));
    this.writing = writeFileAtomically(this.path, text, 'used-code file')
      .catch((err: unknown) => {
        this.dirty = true;
        this.logger.error(errorFields(err), 'used one-time codes not saved; will retry on the next accepted code');
      })
      .finally(() => {
        this.writing = undefined;
      });
    await this.writing;
  }
}
