/**
 * The step-1 handshake against real kernels: a client namespace runs curl; in the server
 * namespace nothing listens on port 80 (nft drops its input so the kernel sends no RST), a
 * small stdlib-only Python helper hands every frame to port 80 to this test's Inspector and
 * sends the Inspector's reply bytes, as they are, from a raw socket (IPv4 and IPv6).
 * curl completing connect() and sending a request whose ACK validates our keyed cookie
 * proves the SYN-ACK is right (checksums, MSS, window); with `step1_reply: reset` curl is
 * reset at once instead of timing out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyedCookieSource } from '../../../src/step1/cookie.js';
import type { Step1Decision } from '../../../src/step1/decision.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { Netns, announceSkip, destroyAll, kernelSkipReason, wire } from '../../helpers/netns.js';
import { OPENVPN_KEYS, STEP1_PATH, fixtureConfig } from '../../unit/step1/fixture-config.js';

const skip = announceSkip('test/kernel/step1/handshake.test.ts', kernelSkipReason(['ip', 'nft', 'curl', 'python3']));

// Reads IP packets to TCP port 80 from the interface (AF_PACKET) and prints them as hex lines;
// sends every hex line read from stdin as a whole IP packet through a raw socket.
const RESPONDER = `
import os, select, socket, sys
iface = sys.argv[1]
tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
tap.bind((iface, 0))
raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
print("ready", flush=True)
pending = b""
while True:
    readable, _, _ = select.select([tap, sys.stdin], [], [])
    if tap in readable:
        frame, address = tap.recvfrom(65535)
        if address[2] == socket.PACKET_OUTGOING: continue
        ethertype, ip = int.from_bytes(frame[12:14], "big"), frame[14:]
        if ethertype == 0x0800 and ip[9] == 6: tcp = ip[(ip[0] & 15) * 4:]
        elif ethertype == 0x86dd and ip[6] == 6: tcp = ip[40:]
        else: continue
        if int.from_bytes(tcp[2:4], "big") == 80: print(ip.hex(), flush=True)
    if sys.stdin in readable:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk: break
        pending += chunk
        while b"\\n" in pending:
            line, pending = pending.split(b"\\n", 1)
            packet = bytes.fromhex(line.decode())
            if packet[0] >> 4 == 4: raw4.sendto(packet, (socket.inet_ntop(socket.AF_INET, packet[16:20]), 0))
            else: raw6.sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))
`;

describe.skipIf(skip)('step-1 handshake with real kernels (network namespaces)', () => {
  let client: Netns | undefined;
  let server: Netns | undefined;
  let responder: ChildProcess | undefined;
  let inspector: Inspector;
  const decisions: Step1Decision[] = [];
  const secret = randomBytes(16);
  const addresses = { a4: '10.214.0.2', b4: '10.214.0.1', a6: 'fd00:214::2', b6: 'fd00:214::1' };

  function useConfig(step1Reply: 'silent' | 'reset'): void {
    inspector = new Inspector(fixtureConfig({ step1Reply }), { cookie: new KeyedCookieSource(secret) });
  }

  beforeAll(async () => {
    client = Netns.create('s1c');
    server = Netns.create('s1s');
    wire(client, server, { ifA: 'veth-c', ifB: 'veth-s', ...addresses });
    server.exec('nft', ['-f', '-'], 'table inet step1test {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 80 drop\n }\n}\n');
    useConfig('silent');
    responder = server.spawn('python3', ['-u', '-c', RESPONDER, 'veth-s'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: responder.stdout! });
    await new Promise<void>((resolve, reject) => {
      responder!.once('exit', (code) => reject(new Error(`responder exited with ${code}`)));
      lines.on('line', (line) => {
        if (line === 'ready') return resolve();
        const decision = inspector.inspect(Buffer.from(line, 'hex'));
        decisions.push(decision);
        if (decision.reply) responder!.stdin!.write(`${decision.reply.toString('hex')}\n`);
      });
    });
  });

  afterAll(() => {
    responder?.kill();
    destroyAll([client, server]);
  });

  /** curl from the client namespace; resolves with its exit code and how long it took. */
  function curl(url: string, body: string, timeoutSeconds: number): Promise<{ code: number; ms: number }> {
    const started = Date.now();
    const child = spawn('ip', ['netns', 'exec', client!.name, 'curl', '-s', '-o', '/dev/null', '-m', String(timeoutSeconds), '-d', body, url], {
      stdio: 'ignore',
    });
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, ms: Date.now() - started })));
  }

  it.each([
    ['IPv4', `http://${addresses.b4}${STEP1_PATH}`, addresses.a4],
    ['IPv6', `http://[${addresses.b6}]${STEP1_PATH}`, addresses.a6],
  ])('%s: curl completes the handshake with our SYN-ACK and its request is granted; it then times out (no answer)', async (_family, url, clientAddress) => {
    decisions.length = 0;
    const result = await curl(url, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`, 1);
    expect(result.code).toBe(28); // operation timed out: step 1 never answers the request
    const mine = decisions.filter((d) => d.src === clientAddress);
    expect(mine[0]).toMatchObject({ result: 'syn' });
    expect(mine.find((d) => d.result === 'granted')).toMatchObject({ app: 'openvpn', user: 'alice', dport: 80 });
    expect(mine.some((d) => d.result === 'spoofed')).toBe(false);
  });

  it('with step1_reply reset, curl is reset right after its request, valid key or not', async () => {
    useConfig('reset');
    try {
      for (const key of [OPENVPN_KEYS[0], 'not-a-valid-key-at-all']) {
        decisions.length = 0;
        const result = await curl(`http://${addresses.b4}${STEP1_PATH}`, `app=openvpn&access_key=${key}`, 3);
        expect(result.code).toBe(56); // failure receiving network data: connection reset by peer
        expect(result.ms).toBeLessThan(2500);
        expect(decisions.filter((d) => d.result === 'granted' || d.result === 'rejected')).toHaveLength(1);
      }
    } finally {
      useConfig('silent');
    }
  });
});
