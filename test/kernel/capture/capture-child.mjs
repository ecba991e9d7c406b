// Runs inside a test network namespace (`ip netns exec NS node capture-child.mjs MODE ...`):
// the addon binds queues and sockets in its own process's namespace, never the root one.
// Prints one JSON object per line on stdout; stops when stdin closes.
import { NfqueueSocket } from '../../../dist/capture/nfqueue.js';
import { NflogSocket } from '../../../dist/capture/nflog.js';
import { RawPacketSender } from '../../../dist/capture/raw-socket.js';
import { LibnftablesRunner } from '../../../dist/firewall/nft-runner.js';

const [mode, arg1, arg2, arg3] = process.argv.slice(2);
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const now = () => process.hrtime.bigint().toString();
let closeAll = () => {};

function stopOnStdinEnd(final) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    emit({ event: 'done', ...final() });
    closeAll();
    process.exit(0);
  });
}

function tcpInfo(packet) {
  const version = packet[0] >> 4;
  const offset = version === 4 ? (packet[0] & 15) * 4 : 40;
  const proto = version === 4 ? packet[9] : packet[6];
  return { version, offset, proto, dport: packet.readUInt16BE(offset + 2), flags: packet[offset + 13] };
}

function checksum(buffers) {
  let sum = 0;
  for (const b of buffers) {
    for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

// Minimal SYN-ACK answering `syn` (IPv4 or IPv6, no IPv6 extension headers), MSS option only.
function buildSynAck(syn) {
  const { version, offset } = tcpInfo(syn);
  const tcp = Buffer.alloc(24);
  tcp.writeUInt16BE(syn.readUInt16BE(offset + 2), 0);
  tcp.writeUInt16BE(syn.readUInt16BE(offset), 2);
  tcp.writeUInt32BE(0x4b500001, 4);
  tcp.writeUInt32BE((syn.readUInt32BE(offset + 4) + 1) >>> 0, 8);
  tcp[12] = 6 << 4;
  tcp[13] = 0x12;
  tcp.writeUInt16BE(64240, 14);
  tcp.set([2, 4, 0x05, 0xb4], 20);
  const src = version === 4 ? syn.subarray(16, 20) : syn.subarray(24, 40);
  const dst = version === 4 ? syn.subarray(12, 16) : syn.subarray(8, 24);
  const pseudo = Buffer.alloc(version === 4 ? 4 : 8);
  if (version === 4) {
    pseudo[1] = 6;
    pseudo.writeUInt16BE(tcp.length, 2);
  } else {
    pseudo.writeUInt32BE(tcp.length, 0);
    pseudo[7] = 6;
  }
  tcp.writeUInt16BE(checksum([src, dst, pseudo, tcp]), 16);
  if (version === 4) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + tcp.length, 2);
    ip.writeUInt16BE(0x4000, 6);
    ip[8] = 64;
    ip[9] = 6;
    ip.set(src, 12);
    ip.set(dst, 16);
    ip.writeUInt16BE(checksum([ip]), 10);
    return Buffer.concat([ip, tcp]);
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(tcp.length, 4);
  ip[6] = 6;
  ip[7] = 64;
  ip.set(src, 8);
  ip.set(dst, 24);
  return Buffer.concat([ip, tcp]);
}

function batchEvent(batch) {
  const indexes = Array.from({ length: batch.count }, (_, i) => i);
  return { event: 'batch', t: now(), count: batch.count, ids: indexes.map((i) => batch.id(i)), dports: indexes.map((i) => tcpInfo(batch.payload(i)).dport) };
}

try {
  // `hold` ms: block the first batch so the rest of a burst piles up in the socket;
  // `receiveBuffer` bytes: a small one makes that pile overflow it.
  const hold = Number(arg2 ?? 0);
  const receiveBuffer = arg3 === undefined ? undefined : Number(arg3);
  let first = true;
  const holdFirst = () => {
    if (first && hold > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, hold);
    first = false;
  };
  if (mode === 'nfqueue') {
    const queue = NfqueueSocket.open({ queue: Number(arg1), maxLen: 4096, receiveBuffer }, (batch, q) => {
      emit(batchEvent(batch));
      holdFirst();
      q.dropBatch(batch);
    });
    closeAll = () => queue.close();
    stopOnStdinEnd(() => ({ stats: queue.stats(), kernel: queue.kernelCounters() }));
  } else if (mode === 'nflog') {
    const log = NflogSocket.open({ group: Number(arg1), receiveBuffer }, (batch) => {
      emit(batchEvent(batch));
      holdFirst();
    });
    closeAll = () => log.close();
    stopOnStdinEnd(() => ({ stats: log.stats() }));
  } else if (mode === 'synack') {
    // SYN-ACKs staged per batch and sent by the addon's thread, as the daemon sends them; each
    // is preceded by a packet to `unroutable`, if given.
    const unroutable = arg3;
    const sender = RawPacketSender.open({ mark: Number(arg2) });
    let answered = 0;
    const outcome = { sent: 0, bufferFull: 0, failed: 0, codes: [] };
    const count = (o) => {
      outcome.sent += o.sent;
      outcome.bufferFull += o.bufferFull;
      outcome.failed += o.failed;
      if (o.failed > 0) outcome.codes.push(o.code);
    };
    const queue = NfqueueSocket.open({ queue: Number(arg1) }, (batch, q) => {
      for (let i = 0; i < batch.count; i++) {
        const packet = batch.payload(i);
        const tcp = tcpInfo(packet);
        if (tcp.proto !== 6 || (tcp.flags & 0x12) !== 0x02) continue;
        const synAck = buildSynAck(packet);
        if (unroutable) {
          const lost = Buffer.from(synAck);
          lost.set(unroutable.split('.').map(Number), 16); // IPv4 destination
          sender.stage(lost);
        }
        sender.stage(synAck);
        answered++;
      }
      count(sender.flush());
      q.dropBatch(batch);
    });
    closeAll = () => queue.close();
    stopOnStdinEnd(() => {
      sender.close(); // sends what waits, so the last flush sees every outcome
      count(sender.flush());
      return { answered, outcome, stats: queue.stats() };
    });
  } else if (mode === 'nft') {
    const runner = LibnftablesRunner.open();
    const checked = runner.run('add table inet kpcheck', { check: true });
    runner.run('add table inet kptest\nadd set inet kptest grants { type ipv4_addr; flags timeout; }');
    runner.run('add element inet kptest grants { 10.9.8.7 timeout 60s }');
    const listed = JSON.parse(runner.run('list set inet kptest grants', { json: true }));
    const tables = runner.run('list tables');
    let error = '';
    try {
      runner.run('add element inet kptest nosuchset { 10.0.0.1 }');
    } catch (e) {
      error = `${e.constructor.name}: ${e.message}`;
    }
    runner.close();
    emit({ event: 'nft', checked, listed, tables, error });
    process.exit(0);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  emit({ event: 'ready', pid: process.pid });
} catch (e) {
  emit({ event: 'error', name: e.constructor.name, message: e.message, code: e.code, errno: e.errno });
  process.exit(1);
}
