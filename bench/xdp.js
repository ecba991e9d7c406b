/**
 * The step-1 XDP front (`step1_xdp: auto`, which takes generic mode on the bench's veth) under
 * the same floods as the kernel path, each against two same-run references: the flood dropped
 * by one nft rule at prerouting (the kernel alone, as in the other sections) and by a bare
 * XDP_DROP program attached in the same mode (what XDP itself can do here):
 *   - SYN flood: SYN-ACKs the program sent (XDP_TX) per second (dropped as they reach the
 *     client, which drops everything addressed to the spoofed sources: see gateway.js);
 *   - junk and wrong-path floods: data segments it dropped per second, and how many still
 *     reached the kernel's rules and the daemon;
 *   - valid `knock-port knock` runs during a spoofed SYN flood at the sender's maximum rate,
 *     with XDP and, beside it, without.
 * Each flood row gives the daemon's CPU during it. Every row runs on each firewall backend.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientTxPackets, kernelReference, kernelReferenceWithKnocks, knocksDuringFlood, throughDaemon, withDaemon, withFlood } from './daemon.js';
import { NET } from './lib/config.js';
import { metricSum, scrapeMetrics } from './lib/gateway.js';
import { recordedPhase } from './lib/phase.js';
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
    const txBefore = clientTxPackets(gateway);
    const run = await flood.run(seconds);
    const dropped = droppedByProgram() - before;
    return {
      dropped,
      pps: dropped / run.seconds,
      offeredPps: (clientTxPackets(gateway) - txBefore) / run.seconds,
      generatorCpuPercent: run.generatorCpuPercent,
      senderError: run.senderError,
      backlogDrops: backlogDrops() - backlogBefore,
    };
  } finally {
    gateway.gw.tryExec('ip', ['link', 'set', 'dev', NET.gwIf, 'xdpgeneric', 'off']);
  }
}

/** The interfaces the daemon's XDP front runs on: none means the row would measure the kernel path. */
function assertXdpAttached(gateway) {
  const attached = metricSum(scrapeMetrics(gateway), 'knockport_step1_xdp_interfaces');
  if (!(attached > 0)) throw new Error('step1_xdp: auto attached to no interface (see the daemon log): XDP rows not measured');
}

const sum = (counts, names) => names.reduce((n, name) => n + (counts?.[name] ?? 0), 0);

/** The program's outcomes that count as handling each flood: answered for SYNs, dropped for the rest. */
const DROP_OUTCOMES = ['bad_cookie', 'bad_prefix', 'bad_options', 'syn_dropped'];
const HANDLED = { syn: ['syn_answered'], junk: DROP_OUTCOMES, wrongPath: DROP_OUTCOMES };

/** SYN, junk and wrong-path floods through the XDP front against both references. */
async function floodRows(gateway, backend, { seconds, log, object }) {
  const rows = {};
  for (const [kind, handled] of Object.entries(HANDLED)) {
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
          const run = await throughDaemon(gateway, daemon, flood, { seconds });
          const handledPps = sum(run.xdp, handled) / run.seconds;
          log(
            `  ${backend.name} XDP ${kind}: offered ${Math.round(references.kernel.offeredPps)} / ${Math.round(references.xdpDrop.offeredPps)} / ${Math.round(run.offeredPps)}/s; nft drop ${Math.round(references.kernel.pps)}/s, XDP_DROP ${Math.round(references.xdpDrop.pps)}/s, step-1 program ${Math.round(handledPps)}/s (${JSON.stringify(run.xdp)}), reached the stack ${run.arrived}, inspected ${run.inspected}, daemon CPU ${Math.round(run.cpuPercent)} %`,
          );
          return { ...references, run: { ...run, handledPps } };
        }),
      { step1Xdp: 'auto' },
    );
  }
  return rows;
}

/**
 * Valid knocks during a SYN flood at the sender's maximum rate, with XDP and without, after the
 * same flood and as many knock clients with the kernel alone dropping the flood (the reference
 * for the sender's rate: the clients share its cores).
 */
async function knockRows(gateway, backend, { knocks, log }) {
  const reference = await withFlood(gateway, 'syn', {}, (flood) => kernelReferenceWithKnocks(gateway, flood, { knocks }));
  log(
    `  ${backend.name} knock reference: the kernel alone dropped ${Math.round(reference.pps)}/s, ${Math.round(reference.offeredPps)}/s offered beside ${reference.knocks} knock clients`,
  );
  const rows = { reference };
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
            `  ${backend.name} knocks during a SYN flood at the sender's maximum, step1_xdp ${step1Xdp}: ${row.knocksOk}/${row.knocks} ok, ${Math.round(row.offeredPps)}/s offered, daemon CPU ${Math.round(row.cpuPercent)} %`,
          );
          return row;
        }),
      { step1Xdp },
    );
  }
  return rows;
}

/** Every XDP row on one backend (the gateway is that backend's). */
export async function xdpBench(gateway, backend, { seconds, knocks, log }) {
  const object = buildDropProgram(gateway);
  const floods = await recordedPhase('XDP floods', () => floodRows(gateway, backend, { seconds, log, object }), log);
  return { floods, knocks: await recordedPhase('XDP knocks', () => knockRows(gateway, backend, { knocks, log }), log) };
}
