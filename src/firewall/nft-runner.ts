import { execFileSync } from 'node:child_process';
import { KnockPortError } from '../errors.js';

export class NftError extends KnockPortError {
  constructor(message: string, readonly script: string) {
    super(message);
  }
}

/** Runs nft command text (the `nft -f` language) and returns nft's output. */
export interface NftRunner {
  /** `json`: ask for JSON output (list commands). `check`: parse and validate only (`nft -c`). */
  run(script: string, options?: { json?: boolean; check?: boolean }): string;
  readonly kind: 'libnftables' | 'cli';
}

/** Fallback runner: one `nft -f -` process per call (about 2.4 ms each). */
export class CliNftRunner implements NftRunner {
  readonly kind = 'cli' as const;

  constructor(private readonly binary = 'nft') {}

  run(script: string, options: { json?: boolean; check?: boolean } = {}): string {
    const args = [...(options.json ? ['-j'] : []), ...(options.check ? ['-c'] : []), '-f', '-'];
    try {
      return execFileSync(this.binary, args, { input: script, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string; code?: string };
      if (err.code === 'ENOENT') throw new NftError(`'${this.binary}' not found: install the nftables package`, script);
      throw new NftError(`nft failed: ${(err.stderr ?? err.message).trim()}`, script);
    }
  }
}
