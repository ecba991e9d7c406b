/**
 * Live capture with libpcap (the `cap` package), for `knock-port watch`: sees traffic only,
 * never changes the firewall or answers a packet.
 */
import { createRequire } from 'node:module';
import { KnockPortError } from '../shared/errors.js';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_NULL, LINKTYPE_RAW } from '../packet/link.js';

/** The part of `cap`'s API used here (the package ships no types). */
interface CapHandle {
  open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
  setMinBytes?(bytes: number): void;
  on(event: 'packet', listener: (bytes: number, truncated: boolean) => void): void;
  close(): void;
}
interface CapModule {
  Cap: new () => CapHandle;
}

export class LiveCaptureError extends KnockPortError {}

/** cap names the link types it knows; anything else is returned as an error text. */
const LINK_TYPES: Record<string, number> = {
  ETHERNET: LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL: LINKTYPE_LINUX_SLL,
  RAW: LINKTYPE_RAW,
  NULL: LINKTYPE_NULL,
};

export interface LiveCapture {
  close(): void;
}

/** Calls `onFrame` for every frame libpcap passes through `filter` on `iface` until closed. */
export function openLiveCapture(iface: string, filter: string, onFrame: (linkType: number, frame: Buffer, timeMs: number) => void): LiveCapture {
  const require = createRequire(import.meta.url);
  let cap: CapModule;
  try {
    cap = require('cap') as CapModule;
  } catch (err) {
    throw new LiveCaptureError(
      `live capture needs the 'cap' package built against libpcap (apt-get install libpcap-dev, then reinstall): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const handle = new cap.Cap();
  const buffer = Buffer.alloc(65535);
  let linkName: string;
  try {
    linkName = handle.open(iface, filter, 10 * 1024 * 1024, buffer);
  } catch (err) {
    throw new LiveCaptureError(`cannot capture on ${iface}: ${(err as Error).message} (it needs root or CAP_NET_RAW, and an existing interface)`, {
      cause: err,
    });
  }
  const linkType = LINK_TYPES[linkName];
  if (linkType === undefined) {
    handle.close();
    throw new LiveCaptureError(`cannot decode frames of ${iface}: ${linkName}`);
  }
  handle.setMinBytes?.(0);
  handle.on('packet', (bytes) => onFrame(linkType, buffer.subarray(0, bytes), Date.now()));
  return { close: () => handle.close() };
}
