/**
 * The client socket for gateways with `step1_handshake: none`, which never answer a SYN: the
 * request must travel inside the SYN itself, with TCP Fast Open. Node's net module cannot ask
 * for that, so the native addon opens the socket with TCP_FASTOPEN_CONNECT (connect() only
 * records the peer; the first write goes out in the SYN) and TCP_FASTOPEN_NO_COOKIE (data
 * without a cookie from an earlier handshake, which this gateway never gives). The per-socket
 * option means the client needs only Linux's default `net.ipv4.tcp_fastopen = 1`, unlike curl
 * (`--tcp-fastopen`), which needs bit 0x4 system-wide or `fastopen_no_cookie` on the route.
 */
import { KnockPortError } from '../shared/errors.js';
import { CaptureError, callNative, loadNativeAddon, NativeAddonMissingError, type NativeAddon } from '../native/addon.js';

/** This host cannot send data in a SYN; the message says what to change. */
export class FastOpenUnavailableError extends KnockPortError {}

/**
 * The kernel keeps room for TCP options in a Fast Open SYN (MAX_TCP_OPTION_SPACE): whatever
 * exceeds the MSS less 40 bytes would follow after a handshake that never comes. With the
 * smallest MSS an IPv6 path guarantees (1220), that leaves 1180 bytes.
 */
export const MAX_SYN_REQUEST_BYTES = 1180;

/**
 * A non-blocking TCP socket fd (the caller owns it) whose first write is sent in the SYN.
 * `load` is replaceable for tests.
 */
export function openFastOpenSocket(family: 4 | 6, load: () => NativeAddon = loadNativeAddon): number {
  const addon = load();
  const open = addon.fastOpenSocket;
  if (open === undefined) {
    throw new NativeAddonMissingError('the native addon predates TCP Fast Open support (--tcp-fastopen): run `npx node-gyp rebuild` in the package directory');
  }
  try {
    return callNative(() => open(family));
  } catch (err) {
    if (err instanceof CaptureError) throw new FastOpenUnavailableError(fastOpenFailure(err.code, err.message), { cause: err });
    throw err;
  }
}

/** What to do about a failed Fast Open setup, by errno code. */
export function fastOpenFailure(code: string | undefined, detail: string): string {
  switch (code) {
    case 'EOPNOTSUPP':
      return (
        'TCP Fast Open is disabled for clients on this host (net.ipv4.tcp_fastopen lacks bit 0x1): ' +
        'enable it with `sudo sysctl -w net.ipv4.tcp_fastopen=1` (the Linux default; add it to /etc/sysctl.d/ to keep it)'
      );
    case 'ENOPROTOOPT':
      return 'this kernel cannot send data in a SYN without a Fast Open cookie (TCP_FASTOPEN_NO_COOKIE needs Linux 4.15 or newer)';
    default:
      return `cannot open a TCP Fast Open socket: ${detail}${code ? ` (${code})` : ''}`;
  }
}
