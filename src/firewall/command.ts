import { execFileSync } from 'node:child_process';
import { KnockPortError } from '../errors.js';

/** A firewall tool (iptables-restore, ipset, ...) failed; the message carries its stderr. */
export class FirewallCommandError extends KnockPortError {
  constructor(
    message: string,
    readonly command: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Runs one firewall tool and returns its stdout; throws FirewallCommandError on failure. */
export interface CommandRunner {
  run(command: string, args: string[], input?: string): string;
}

/**
 * Runs tools directly, or behind a prefix such as `ip netns exec NS` so that every
 * call lands in another network namespace (kernel tests never touch the host's rules).
 */
export class ExecCommandRunner implements CommandRunner {
  constructor(private readonly prefix: string[] = []) {}

  run(command: string, args: string[], input?: string): string {
    const [file, ...fileArgs] = [...this.prefix, command, ...args] as [string, ...string[]];
    try {
      return execFileSync(file, fileArgs, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string; code?: string };
      if (err.code === 'ENOENT') {
        throw new FirewallCommandError(`'${file}' not found: install it (see packaging/debian-packages.txt)`, command, '');
      }
      const stderr = (err.stderr ?? err.message).trim();
      throw new FirewallCommandError(`${command} ${args.join(' ')} failed: ${stderr}`, command, stderr);
    }
  }
}

/** The command prefix that runs a tool inside network namespace `netns`, or none. */
export function netnsPrefix(netns: string | undefined): string[] {
  return netns ? ['ip', 'netns', 'exec', netns] : [];
}
