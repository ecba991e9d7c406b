/**
 * Why a file the daemon needs could not be read, in words an operator acts on: which user the
 * process runs as when permission is denied, and that a directory is not a file.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

/** Who this process runs as: `knock-port (uid 998)` and its group's name, as far as this host can name them. */
export function processIdentity(): { user: string; group: string } {
  const uid = process.getuid?.() ?? -1;
  let user = `uid ${uid}`;
  try {
    user = `${userInfo().username} (uid ${uid})`;
  } catch {
    // A uid with no passwd entry (a container, DynamicUser=): the number says enough.
  }
  return { user, group: groupName(process.getgid?.() ?? -1) };
}

/** The group's name from /etc/group, or its number. */
function groupName(gid: number): string {
  try {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((entry) => entry.split(':')[2] === String(gid));
    if (line) return line.split(':')[0]!;
  } catch {
    // No /etc/group: the number.
  }
  return String(gid);
}

/**
 * The reason a read of `path` failed: for EACCES the user this process runs as and the usual fix,
 * for EISDIR that it is a directory. Other errors keep the system's message.
 */
export function explainReadError(err: unknown, path: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return `${path} is a directory, not a file`;
  if (code === 'EACCES' || code === 'EPERM') {
    const { user, group } = processIdentity();
    return (
      `permission denied: knock-port runs as user ${user}, group ${group}, which cannot read it; ` +
      `make it readable by that group (chgrp ${group} ${path} && chmod 640 ${path}) with every directory above it searchable (chmod g+x), ` +
      'or run as a user that can read it'
    );
  }
  return (err as Error).message;
}
