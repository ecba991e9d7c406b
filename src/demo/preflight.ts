/**
 * Checks before the demo touches anything: Linux, root, and the host commands it runs, with
 * the package to install for any that is missing.
 */
import { DemoError } from './errors.js';
import { missingCommands } from './netns.js';

/** Host commands the demo runs itself; the daemon needs nothing more with its default nftables backend. */
export const DEMO_COMMANDS = ['ip', 'nft', 'curl', 'openssl'] as const;

const PACKAGE_OF: Record<(typeof DEMO_COMMANDS)[number], string> = { ip: 'iproute2', nft: 'nftables', curl: 'curl', openssl: 'openssl' };

/** Throws a DemoError saying what to do when the demo cannot run on this host. */
export function checkDemoPrerequisites(uid = process.getuid?.(), path = process.env.PATH): void {
  if (process.platform !== 'linux') throw new DemoError('the demo needs Linux (network namespaces and nftables).');
  if (uid !== 0) {
    throw new DemoError(
      'the demo needs root: it creates network namespaces and firewall rules inside them (nothing outside them is touched). Run it again with sudo: sudo knock-port demo',
    );
  }
  const missing = missingCommands(DEMO_COMMANDS, path) as Array<(typeof DEMO_COMMANDS)[number]>;
  if (missing.length > 0) {
    throw new DemoError(
      `the demo needs the command${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, not found on PATH. On Debian/Ubuntu: apt-get install -y ${missing.map((c) => PACKAGE_OF[c]).join(' ')}`,
    );
  }
}
