/**
 * The step-1 XDP front (`step1_xdp: auto`, which takes generic mode on the bench's veth) under
 * the same floods as the kernel path, each against two same-run references: the flood dropped
 * by one nft rule at prerouting (the kernel alone, as in the other sections) and by a bare
 * XDP_DROP program attached in the same mode (what XDP itself can do here):
 *   - SYN flood: SYN-ACKs the program sent (XDP_TX) per second (the SYN-ACKs dropped as they
 *     reach the client, as the references send none);
 *   - junk flood: data segments it dropped per second, and how many still reached the daemon;
 *   - valid `knock-port knock` runs during a spoofed SYN flood at the sender's maximum rate,
 *     with XDP and, beside it, without.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernelReference, knocksDuringFlood, throughDaemon, withDaemon, withFlood } from './daemon.js';
import { NET } from './lib/config.js';
import { metricSum, scrapeMetrics } from './lib/gateway.js';
import { backlogDrops } from './lib/proc.js';

const DROP_MAP = 'kpbench_drops';
const DROP_SOURCE = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} ${DROP_MAP} SEC(".maps");
SEC("xdp") int kpbench_drop(struct xdp_md *ctx) {
  __u32 zero = 0;
  __u64 *n = bpf_map_lookup_elem(&${DROP_MAP}, &zero);
  if (n) *n += 1;
  return XDP_DROP;
}
char LICENSE[] SEC("license") = "GPL";
`;

/** The bare XDP_DROP program, compiled with clang (a build dependency of the addon's own program). */
function buildDropProgram(gateway) {
  const source = join(gateway.dir, 'xdp-drop.c');
  const object = join(gateway.dir, 'xdp-drop.o');
  writeFileSync(source, DROP_SOURCE);
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', source, '-o', object], { timeout: 60_000 });
  return object;
}

/** Packets the XDP_DROP program counted (summed over CPUs), read through bpftool. */
function droppedByProgram() {
  const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'name', DROP_MAP], { encoding: 'utf8' }));
  let sum = 0;
  const add = (node) => {
    if (Array.isArray(node)) node.forEach(add);
    else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) k === 'value' && typeof v === 'number' ? (sum += v) : add(v);
  };
  add(dump);
  return sum;
}

/** The same flood dropped by the bare XDP_DROP program in generic mode on the gateway's interface. */
async function xdpDropReference(gateway, flood, seconds, object) {
  gateway.gw.exec('ip', ['link', 'set', 'dev', NET.gwIf, 'xdpgeneric', 'obj', object, 'sec', 'xdp']);
  try {
    const before = droppedByProgram();
    const backlogBefore = backlogDrops();
    const run = await flood.run(seconds);
    const dropped = droppedByProgram() - before;
    return { dropped, pps: dropped / run.seconds, generatorCpuPercent: run.generatorCpuPercent, backlogDrops: backlogDrops() - backlogBefore };
  } finally {
    gateway.gw.tryExec('ip', ['link', 'set', 'dev', NET.gwIf, 'xdpgeneric', 'off']);
  }
}

/**
 * Runs `use` with the returning SYN-ACKs dropped at the client's interface (the same bare
 * program): the references send nothing back, and without this the client's kernel would
 * handle every SYN-ACK on the cores the generator needs.
 */
async function withRepliesDropped(gateway, object, use) {
  gateway.client.exec('ip', ['link', 'set', 'dev', NET.clientIf, 'xdpgeneric', 'obj', object, 'sec', 'xdp']);
  try {
    return await use();
  } finally {
    gateway.client.tryExec('ip', ['link', 'set', 'dev', NET.clientIf, 'xdpgeneric', 'off']);
  }
}

/** The interfaces the daemon's XDP front runs on: none means the row would measure the kernel path. */
function assertXdpAttached(gateway) {
  const attached = metricSum(scrapeMetrics(gateway), 'knockport_step1_xdp_interfaces');
  if (!(attached > 0)) throw new Error('step1_xdp: auto attached to no interface (see the daemon log): XDP rows not measured');
}

const sum = (counts, names) => names.reduce((n, name) => n + (counts?.[name] ?? 0), 0);

/** SYN and junk floods through the XDP front against both references. */
async function floodRows(gateway, backend, { seconds, log, object }) {
  const rows = {};
  for (const [kind, handled] of [
    ['syn', ['syn_answered']],
    ['junk', ['bad_cookie', 'bad_prefix', 'bad_options', 'syn_dropped']],
  ]) {
    // The references first, with no daemon: its XDP link would be in their way.
    const references = await withFlood(gateway, kind, {}, async (flood) => ({
      kernel: await kernelReference(gateway, flood, seconds),
      xdpDrop: await xdpDropReference(gateway, flood, seconds, object),
    }));
    rows[kind] = await withDaemon(
      gateway,
      backend,
      undefined,
      (daemon) =>
        withFlood(gateway, kind, daemon, async (flood) => {
          assertXdpAttached(gateway);
          const run = await withRepliesDropped(gateway, object, () => throughDaemon(gateway, daemon, flood, { seconds }));
          const handledPps = sum(run.xdp, handled) / run.seconds;
          log(
            `  XDP ${kind}: nft drop ${Math.round(references.kernel.pps)}/s, XDP_DROP ${Math.round(references.xdpDrop.pps)}/s, step-1 program ${Math.round(handledPps)}/s (${JSON.stringify(run.xdp)}), inspected ${run.inspected}`,
          );
          return { ...references, run: { ...run, handledPps } };
        }),
      { step1Xdp: 'auto' },
    );
  }
  return rows;
}

/** Valid knocks during a SYN flood at the sender's maximum rate, with XDP and without. */
async function knockRows(gateway, backend, { knocks, log }) {
  const rows = {};
  for (const [label, step1Xdp] of [
    ['xdp', 'auto'],
    ['kernel', 'off'],
  ]) {
    rows[label] = await withDaemon(
      gateway,
      backend,
      undefined,
      (daemon) =>
        withFlood(gateway, 'syn', daemon, async (flood) => {
          if (step1Xdp === 'auto') assertXdpAttached(gateway);
          const row = await knocksDuringFlood(gateway, daemon, flood, { knocks });
          log(
            `  knocks during a SYN flood at the sender's maximum, step1_xdp ${step1Xdp}: ${row.knocksOk}/${row.knocks} ok, ${Math.round(row.offeredPps)}/s offered`,
          );
          return row;
        }),
      { step1Xdp },
    );
  }
  return rows;
}

export async function xdpBench(gateway, backend, { seconds, knocks, log }) {
  const object = buildDropProgram(gateway);
  const floods = await floodRows(gateway, backend, { seconds, log, object });
  return { backend: backend.name, floods, knocks: await knockRows(gateway, backend, { knocks, log }) };
}
