/**
 * Hand-crafted TCP segments from a client namespace, for attack tests: spoofed data without
 * a handshake, a handshake done by hand followed by odd segments (split requests, IP
 * fragments, IPv6 extension headers), and the replay of a captured segment from another
 * source. The packet work is a stdlib-only Python script (raw-inject.py) run in the namespace.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor, type Netns } from './netns.js';
import { scaled } from './vm.js';

const SCRIPT = join(import.meta.dirname, 'raw-inject.py');
/** A pcap file's global header: a capture holding no packet is this long. */
const PCAP_HEADER_BYTES = 24;

export interface InjectSpec {
  /** Client interface the SYN-ACK arrives on. */
  iface: string;
  src: string;
  dst: string;
  dport: number;
  sport?: number;
  /** Do the TCP handshake by hand first (the data then carries a valid cookie). */
  handshake?: boolean;
  /** Payloads, one TCP segment each, in sequence order. */
  segments: Buffer[];
  /** Split every data datagram into IP fragments of this many bytes (a multiple of 8). */
  fragment?: number;
  /** IPv6 only: an extension header in front of TCP. */
  extension?: 'hop-by-hop' | 'destination' | 'atomic-fragment';
}

export interface InjectResult {
  sport: number;
  /** Whether the SYN-ACK arrived (always false without a handshake). */
  synAck: boolean;
  /** IP datagrams sent carrying data. */
  sent: number;
}

/** A bound on one run of the script, not an expectation: it takes well under a second on an idle host. */
const SCRIPT_LIMIT_SECONDS = scaled(30);

function runScript(ns: Netns, spec: object): unknown {
  const out = ns.exec('timeout', [String(SCRIPT_LIMIT_SECONDS), 'python3', SCRIPT, JSON.stringify(spec)]);
  return JSON.parse(out.trim().split('\n').pop()!) as unknown;
}

export function injectSegments(ns: Netns, spec: InjectSpec): InjectResult {
  return runScript(ns, { ...spec, segments: spec.segments.map((s) => s.toString('hex')) }) as InjectResult;
}

/** Re-sends the first TCP data segment to `dport` in `pcap`, with its source set to `src`. */
export function replayCapturedSegment(ns: Netns, options: { iface: string; pcap: string; src: string; dport: number }): { sport: number; seq: number } {
  return runScript(ns, { iface: options.iface, dport: options.dport, replay: { pcap: options.pcap, src: options.src } }) as { sport: number; seq: number };
}

/**
 * Records what `ns` sends from `src` on `iface` to `dport` into `pcap` (tcpdump) while `action` runs.
 * tcpdump is stopped by its own process id, and the file is complete when this resolves.
 */
export async function captureWhile(
  ns: Netns,
  options: { iface: string; src: string; dport: number; pcap: string },
  action: () => Promise<unknown>,
): Promise<void> {
  const tcpdump = ns.spawn(
    'tcpdump',
    ['-i', options.iface, '--immediate-mode', '-U', '-n', '-w', options.pcap, `tcp dst port ${options.dport} and src host ${options.src}`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  tcpdump.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => tcpdump.once('exit', () => resolve()));
  try {
    if (!(await waitFor(() => stderr.includes('listening on'), 5_000))) throw new Error(`tcpdump did not start: ${stderr}`);
    await action();
    // The action may end the moment its packet left (a knock ends at its grant): give tcpdump time to write it.
    await waitFor(() => existsSync(options.pcap) && statSync(options.pcap).size > PCAP_HEADER_BYTES, 2_000);
  } finally {
    tcpdump.kill('SIGINT');
    await exited;
  }
}
