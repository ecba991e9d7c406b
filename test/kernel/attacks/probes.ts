/**
 * What an attacker's client sees, checked from the client namespace without blocking the
 * event loop (so several probes and a flood can run at once): HTTPS, the TCP service and the
 * UDP service, each from a chosen source address.
 */
import type { Netns } from '../../helpers/netns.js';
import { execIn } from '../../helpers/scenario.js';

export { execIn };

export const bracket = (addr: string): string => (addr.includes(':') ? `[${addr}]` : addr);

/** curl from `from`: the HTTP status, "000" when nothing answered in time. */
export async function curlFrom(
  ns: Netns,
  from: string,
  args: string[],
  timeoutSeconds: number,
): Promise<{ status: string; body: string; code: number | null }> {
  const r = await execIn(ns, 'curl', ['-sS', '-m', String(timeoutSeconds), '--interface', from, '-o', '-', '-w', '\n%{http_code}', ...args]);
  const cut = r.out.lastIndexOf('\n');
  return { status: r.out.slice(cut + 1).trim() || '000', body: r.out.slice(0, Math.max(cut, 0)), code: r.code };
}

/** True when a TCP connection from `from` to addr:port completes in time. */
export async function tcpConnects(ns: Netns, from: string, addr: string, port: number, timeoutMs = 800): Promise<boolean> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(addr)}, port: ${port}, localAddress: ${JSON.stringify(from)} });
    s.on('connect', () => process.exit(0));
    s.on('error', () => process.exit(2));
    setTimeout(() => process.exit(1), ${timeoutMs});`;
  return (await execIn(ns, process.execPath, ['-e', script])).code === 0;
}

/** True when a UDP datagram from `from` to addr:port is echoed in time. */
export async function udpEchoes(ns: Netns, from: string, addr: string, port: number, timeoutMs = 800): Promise<boolean> {
  const script = `
    const s = require('node:dgram').createSocket(${JSON.stringify(addr.includes(':') ? 'udp6' : 'udp4')});
    s.on('error', () => process.exit(2));
    s.on('message', () => process.exit(0));
    s.bind({ address: ${JSON.stringify(from)}, port: 0 }, () => s.send('ping', ${port}, ${JSON.stringify(addr)}));
    setTimeout(() => process.exit(1), ${timeoutMs});`;
  return (await execIn(ns, process.execPath, ['-e', script])).code === 0;
}

export interface Exposure {
  https: boolean;
  tcpService: boolean;
  udpService: boolean;
}

/** Which ports `from` can reach on the gateway, all probed at once. */
export async function exposure(ns: Netns, from: string, gw: string, ports: { https: number; tcp: number; udp: number }): Promise<Exposure> {
  const [https, tcpService, udpService] = await Promise.all([
    tcpConnects(ns, from, gw, ports.https),
    tcpConnects(ns, from, gw, ports.tcp),
    udpEchoes(ns, from, gw, ports.udp),
  ]);
  return { https, tcpService, udpService };
}

export const ALL_CLOSED: Exposure = { https: false, tcpService: false, udpService: false };
