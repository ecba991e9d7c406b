/**
 * bench/RESULTS.md from one run's figures: every figure next to its same-run reference (as a
 * ratio), the target and whether it is met, and the original knock-port's figure for the same
 * measurement (from its baseline, measured in another run on a machine of the same kind).
 */

/** The original's figures (../shared/reference/original-knock-port-baseline.md, another run). */
const ORIGINAL = {
  latency: {
    iptables: { step1: '17.3 / 21.5 / 23.7 ms', step2: '16.4 / 19.5 / 21.3 ms' },
    nftables: { step1: '21.1 / 25.6 / 26.9 ms', step2: '20.1 / 26.5 / 27.8 ms' },
  },
  flood: {
    syn: 'no inspection: 70-85k SYN/s answered by the kernel (SYN cookies); app CPU 3-18 %',
    junk: 'no inspection: 175k pkt/s dropped by a kernel rule; app CPU 3-17 %',
    wrongKey: '≈1,000 req/s at ~100 % of a core (python client); 184 req/s (8 curl loops)',
  },
  knocks: '20/20 valid knocks in every flood (nftables mode)',
  grant: 'median step-1 response 27 ms at N≈50, 120 ms at N≈900, 181 ms at N≈1,900, 266 ms at N≈2,900 (linear; 100k not reachable)',
  packet: 'service connect from the oldest session: 21 µs at N=1, 59 µs at 1,000, 134 µs at 2,000, 211 µs at 3,000 (linear rule list)',
  memory: 'RSS 46 MB at 1 session, 52 MB at 3,000; not measured under flood',
};

const TARGET = {
  inspectPps: 150_000,
  /** Knocks that reach the key check (wrong key, valid): the faster inspector's target. */
  knockInspectPps: 250_000,
  dropRatio: 0.9,
  inspectedWithWorkersPps: 200_000,
  knockSuccess: 0.99,
  idleP99: 5,
  rssMb: 120,
  flatRatio: 2,
  xdpSynRatio: 0.8,
  xdpDropRatio: 0.9,
  xdpDaemonCpu: 5,
};

/**
 * A flood row is measured only when its generator delivered at least this share of what the
 * same generator delivered with the kernel alone (or of the rate asked of it). On this machine
 * the generator shares 2 cores with the daemon, which costs it up to ~45 % of its kernel-alone
 * rate while the daemon inspects at full load; a stalled generator delivers 4-14 % (see
 * docs/benchmarks.md). Below the share, the row says so instead of a ratio and a verdict.
 */
const GENERATOR_MIN_SHARE = 0.5;

const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ms = (n, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const mb = (n) => (Number.isFinite(n) ? `${n.toFixed(0)} MB` : 'n/a');
const pct = (n) => (Number.isFinite(n) ? `${n.toFixed(0)} %` : 'n/a');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `×${(a / b).toFixed(2)}` : 'n/a');
/**
 * A run that started on a busy machine (1-minute load average at or above this) gives figures
 * but no verdicts: other work on the same cores moves every figure (the same flood came out 2×
 * apart between two such runs).
 */
const VERDICT_MAX_LOAD = 2;
/** Why the section being rendered gets no verdicts (its run started on a busy machine), else undefined. */
let noVerdictBecause;
const busyAtStart = (load) => (Number.isFinite(load) && load >= VERDICT_MAX_LOAD ? `machine load ${load.toFixed(1)} at the start` : undefined);
const verdict = (met) => (noVerdictBecause ? `no verdict (${noVerdictBecause})` : met ? 'met' : '**MISSED**');
const p3 = (p) => `${ms(p.p50)} / ${ms(p.p95)} / ${ms(p.p99)} ms`;
const failed = (phase) => phase === undefined || phase.error !== undefined;
const errorNote = (phase) => (phase === undefined ? 'not run' : `**not measured**: ${phase.error}`);

const FLOOD_NAMES = {
  syn: 'SYN flood (spoofed sources)',
  junk: 'junk data (bad cookie, random payload)',
  wrongPath: 'wrong path (`GET /`, `POST /wrong`)',
  wrongKey: 'wrong-key POSTs (valid cookie, parsed + key checked)',
};

function table(header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Where the CPU went during a run: the sender, the daemon (and its busiest threads), the kernel's packet work, idle. */
function cpuNote(run) {
  const threads = (run.threads ?? [])
    .slice(0, 4)
    .map((t) => `${t.name}#${t.tid} ${pct(t.percent)}`)
    .join(', ');
  const m = run.machine ?? {};
  return `sender ${pct(run.generatorCpuPercent)}; daemon ${pct(run.cpuPercent)}${threads ? ` (${threads})` : ''}; machine: softirq ${pct(m.softirq)}, idle ${pct(m.idle)}`;
}

/**
 * What bounds a figure that misses its target, from the run's own CPU readings: percentages
 * are of one core; the machine's shares are of all its cores together.
 */
function bound(run) {
  const reasons = [];
  if (run.aliveAfter === 0) reasons.push('the capture stopped during the flood (0/3 knocks after it)');
  if (run.senderError) reasons.push(`the sender failed part-way (${run.senderError})`);
  if (run.senderWaits?.wouldBlock > 0)
    reasons.push(`the sender waited for room in its send buffer ${int(run.senderWaits.wouldBlock)} times (frames held by the gateway)`);
  if ((run.machine?.idle ?? 100) < 10) reasons.push('every core busy (sender, kernel packet work and daemon share them)');
  const busiest = run.threads?.[0];
  if (busiest && busiest.percent >= 90) reasons.push(`one daemon thread saturated (${busiest.name}#${busiest.tid} ${pct(busiest.percent)})`);
  if (run.generatorCpuPercent >= 90) reasons.push(`the sender saturates its core (${pct(run.generatorCpuPercent)})`);
  if (run.queueDropped > 0) reasons.push(`queue full: ${int(run.queueDropped)} dropped by the kernel`);
  if (run.backlogDrops > 0) reasons.push(`receive backlog overflow: ${int(run.backlogDrops)}`);
  if (Number.isFinite(run.workersAlive) && run.workers && run.workersAlive < run.workers)
    reasons.push(`only ${run.workersAlive} of ${run.workers} workers alive after`);
  return reasons.length ? `bounded by: ${reasons.join('; ')}` : 'no CPU bound seen (see CPU column)';
}

/** The kernel reference with its sender's CPU, and whether that sender could send all along. */
function kernelCell(kernel) {
  const failed = kernel.senderError ? `; the sender failed part-way: a low figure` : '';
  return `${int(kernel.pps)} (sender ${pct(kernel.generatorCpuPercent)}${failed})`;
}

/** What the generator produced: the client interface's kernel transmit counter. */
function offered(run) {
  return `${int(run.offeredPps)} offered`;
}

/** What the generator delivered in the kernel-alone reference run: the kernel's transmit counter, else what was dropped. */
const referencePps = (kernel) => (Number.isFinite(kernel?.offeredPps) && kernel.offeredPps > 0 ? kernel.offeredPps : kernel?.pps);

/**
 * "not measured: …" when the generator delivered less than GENERATOR_MIN_SHARE of `reference`
 * (its kernel-alone rate, or the rate asked of it), or, for a reference that is itself a
 * generator run (`twoWay`), when that run delivered less than the share of this one: a ratio
 * is only worth something between floods of comparable size. Else undefined: the row is measured.
 */
function notMeasured(run, reference, of = 'its kernel-alone reference', twoWay = true) {
  if (!Number.isFinite(run.offeredPps) || !Number.isFinite(reference) || reference <= 0) return undefined;
  const share = `${Math.round(GENERATOR_MIN_SHARE * 100)} %`;
  if (run.offeredPps < GENERATOR_MIN_SHARE * reference)
    return `not measured: generator delivered ${int(run.offeredPps)} pps (< ${share} of ${of}, ${int(reference)} pps)`;
  if (twoWay && reference < GENERATOR_MIN_SHARE * run.offeredPps)
    return `not measured: the reference's generator delivered ${int(reference)} pps (< ${share} of this run's ${int(run.offeredPps)} pps)`;
  return undefined;
}

/** The outcome counters, when they disagree with the workers' packet counters by more than 5 %. */
function decidedGap(run) {
  if (!Number.isFinite(run.decided) || Math.abs(run.decided - run.inspected) <= 0.05 * Math.max(1, run.inspected)) return '';
  return `; outcomes counted: ${int(run.decided / run.seconds)}/s`;
}

function inspectorSection(r) {
  const names = {
    syn: 'SYN → cookie SYN-ACK',
    junk: 'junk data → spoofed',
    wrongKey: 'wrong-key knock → rejected',
    validKnock: 'valid knock → granted',
    getWithCookie: 'GET with a valid cookie → rejected',
    oversize: 'oversize POST with a valid cookie → rejected',
  };
  const rows = Object.entries(r.inspector.rows).map(([kind, row]) => {
    const target = kind === 'wrongKey' || kind === 'validKnock' ? TARGET.knockInspectPps : TARGET.inspectPps;
    return [
      names[kind] ?? kind,
      int(row.perSecond),
      ratio(row.perSecond, r.inspector.decodeOnlyPps),
      `≥ ${int(target)}/s: ${verdict(row.perSecond >= target)}`,
    ];
  });
  const nfq = r.nfqueue;
  const nfqText = failed(nfq)
    ? errorNote(nfq)
    : `${int(nfq.nfqueueBatchVerdictPps)}/s with batch verdicts (${ratio(nfq.nfqueueBatchVerdictPps, nfq.kernelDropPps)} of the kernel dropping the same flood, ${int(nfq.kernelDropPps)}/s), ${int(nfq.nfqueuePerPacketVerdictPps)}/s with one verdict per packet`;
  return `## 1. Step-1 inspector alone (in process, one core)

Packets per second of CPU time on one thread; reference: bare packet decoding of the same packets in the same run (${int(r.inspector.decodeOnlyPps)}/s).

${table(['packet', 'inspected/s (one core)', 'vs decode only', 'target'], rows)}

${Number.isFinite(r.inspector.lockoutCheckPps) ? `The lockout check every cookie-valid knock makes (shared table, at most one slot's lock, nothing allocated), alone: ${int(r.inspector.lockoutCheckPps)}/s.\n\n` : ''}NFQUEUE transport alone (\`bench/nfqueue-throughput.js\`, no parsing, UDP flood, one queue): ${nfqText}. Reference figures from the design notes (another run): a C libnetfilter_queue consumer ~200,000/s, a Node NFQUEUE binding ~90,000/s with no parsing.
`;
}

function dropSection(r) {
  const rows = [];
  for (const [name, b] of Object.entries(r.backends)) {
    if (failed(b.drop)) {
      rows.push([name, 'junk and wrong path', errorNote(b.drop), '', '', '', '', '']);
      continue;
    }
    for (const [kind, f] of Object.entries(b.drop)) {
      const d = f.daemon;
      const met = d.arrivedPps >= TARGET.dropRatio * f.kernel.pps;
      const short = notMeasured(d, referencePps(f.kernel));
      rows.push([
        name,
        FLOOD_NAMES[kind],
        kernelCell(f.kernel),
        `${int(d.arrivedPps)} (${offered(d)})`,
        short ? 'not measured' : ratio(d.arrivedPps, f.kernel.pps),
        short ?? `≥ ×${TARGET.dropRatio}: ${verdict(met)}${met ? '' : ` (${bound(d)})`}`,
        `${int(d.inspected)} (${int(d.inspectedPps)}/s)${
          d.inspected > 0 && d.outcomes
            ? `: ${Object.entries(d.outcomes)
                .map(([o, v]) => `${o} ${int(v)}`)
                .join(', ')}`
            : ''
        }`,
        cpuNote(d),
      ]);
    }
  }
  return `## 2. Junk and wrong-path floods: dropped in the kernel

Each flood runs ${r.floodSeconds} s at full speed from the client namespace (one process of the bench's sender, \`bench/lib/flood-sender.c\`; offered: the client interface's kernel transmit counter) against a freshly started daemon (default \`step1_workers\`, ${r.defaultWorkers} here). Dropped/s: step-1 packets that reached the gateway's firewall, counted by an nft counter at prerouting (priority -400) ahead of knock-port's rules; every one of them is dropped (by the prefilter, which drops data segments not beginning with \`POST <http_post_path>\` before the capture). Reference: the same flood dropped by that one nft rule alone, same run. "Reached the inspector": packets the daemon's step-1 workers inspected (metrics endpoint), by inspector outcome: with the prefilter, about 0.

Original (another run): ${ORIGINAL.flood.junk}.

${table(['backend', 'flood', 'kernel alone (pkt/s dropped)', 'with knock-port (pkt/s dropped)', 'knock-port / kernel', 'target', 'reached the inspector', 'CPU (% of one core; machine shares of all cores)'], rows)}
`;
}

function inspectSection(r) {
  const rows = [];
  const n = r.workersN;
  for (const [name, b] of Object.entries(r.backends)) {
    if (failed(b.inspect)) {
      rows.push([name, 'SYN and wrong key', '', errorNote(b.inspect), '', '', '', '', '', '', '']);
      continue;
    }
    for (const [kind, f] of Object.entries(b.inspect)) {
      if (failed(f)) {
        rows.push([name, FLOOD_NAMES[kind], '', '', errorNote(f), '', '', '', '', '', '', '']);
        continue;
      }
      const one = f.workers[1];
      for (const [workers, w] of Object.entries(f.workers)) {
        const isN = Number(workers) !== 1;
        const met = w.inspectedPps >= TARGET.inspectedWithWorkersPps;
        const short = notMeasured(w, referencePps(f.kernel));
        rows.push([
          name,
          FLOOD_NAMES[kind],
          kernelCell(f.kernel),
          workers,
          `${offered(w)}, ${int(w.arrivedPps)} reached the firewall`,
          `**${int(w.inspectedPps)}**${
            Object.keys(w.perWorker ?? {}).length > 1
              ? ` (per worker: ${Object.values(w.perWorker)
                  .map((v) => int(v / w.seconds))
                  .join(' / ')})`
              : ''
          }${decidedGap(w)}`,
          short ? 'not measured' : ratio(w.inspectedPps, f.kernel.pps),
          isN && !short ? ratio(w.inspectedPps, one?.inspectedPps) : '',
          short ??
            (isN
              ? `≥ ${int(TARGET.inspectedWithWorkersPps)}/s: ${verdict(met)}${met ? '' : ` (${bound({ ...w, workers: Number(workers) })})`}`
              : `(${bound({ ...w, workers: 1 })})`),
          `${int(w.queueDropped)} (${pct((w.queueDropped / Math.max(1, w.arrived)) * 100)})`,
          `${w.aliveAfter}/3${w.aliveFailures?.length ? ` (${w.aliveFailures.join(', ')})` : ''}`,
          cpuNote(w),
        ]);
      }
    }
  }
  return `## 3. SYN and wrong-key floods: inspected/s with 1 and ${n} step-1 workers

Each flood runs ${r.floodSeconds} s at full speed against a freshly started daemon with \`step1_workers: 1\`, then one with \`step1_workers: ${n}\` (the kernel fans step-1 packets over ${n} queues, or ${n} NFLOG groups, by the CPU that handles them). Reference: the same flood dropped by one nft rule at prerouting (the kernel alone), same run. "Inspected": packets the step-1 workers took from their queues or groups and inspected (\`knockport_step1_worker_packets_total\`, per worker in brackets); where the inspector's outcome counters (\`knockport_step1_packets_total\`) disagree by more than 5 %, their rate is shown too. Every step-1 packet is dropped. The SYN flood comes from random spoofed sources (its SYN-ACKs go back to the client, whose interface drops them at ingress); the wrong-key knocks are sent by the same sender. The kernel's per-source step-1 limit is raised for the bench (\`syn_rate_per_second: 500000\`) so the whole flood reaches the daemon.
Queue drops: NFQUEUE queue-full and netlink drops (\`/proc/net/netfilter/nfnetlink_queue\`); NFLOG has no kernel counter, its losses are packets that reached the firewall but were not inspected. "Capture after": knocks from fresh addresses that worked right after the flood (0/3: the capture stopped, and the figures count what it inspected before).
CPU: the sender (with everything the kernel does in its context), the daemon as a whole and its busiest threads (\`/proc/<pid>/task/*/stat\`; worker threads are threads of the daemon), and the machine's softirq (packet work the kernel does for the flood) and idle shares over all ${r.machine.cores} cores. The flood's sender, the kernel and the daemon share these cores, which is what bounds the figures here.

Original (another run): SYN flood: ${ORIGINAL.flood.syn}; wrong-key POSTs: ${ORIGINAL.flood.wrongKey}.

${table(['backend', 'flood', 'kernel alone (pkt/s)', 'workers', 'offered (pkt/s)', 'inspected/s', 'inspected / kernel', `${n} / 1 workers`, 'target / bound', 'queue drops', 'capture after', 'CPU (% of one core; machine shares of all cores)'], rows)}
`;
}

function knocksSection(r) {
  const rows = [];
  for (const [name, b] of Object.entries(r.backends)) {
    if (failed(b.knocks)) {
      rows.push([name, '', errorNote(b.knocks ?? { error: 'not run (no capacity figure)' }), '', '', '', '', '']);
      continue;
    }
    for (const [multiple, k] of Object.entries(b.knocks)) {
      const success = k.knocks ? k.knocksOk / k.knocks : NaN;
      const short = notMeasured(k, b.capacityPps * Number(multiple), 'the rate asked of it', false);
      const failures = Object.entries(k.failureCodes ?? {})
        .map(([code, count]) => `${count}× exit ${code}`)
        .join(', ');
      rows.push([
        name,
        `${multiple}× (${int(b.capacityPps * Number(multiple))}/s asked)`,
        `${offered(k)}, ${int(k.arrivedPps)} reached the firewall, ${int(k.inspectedPps)} inspected`,
        `${k.knocksOk}/${k.knocks} (${pct(success * 100)})`,
        short ??
          (Number(multiple) === 1 ? `≥ 99 %: ${verdict(success >= TARGET.knockSuccess)}${success >= TARGET.knockSuccess ? '' : ` (${bound(k)})`}` : 'reported'),
        failures || 'none',
        `${ms(k.knockMs?.p50 / 1000)} / ${ms(k.knockMs?.p95 / 1000)} s`,
        cpuNote(k),
      ]);
    }
  }
  return `## 4. Valid knocks during a spoofed-source SYN flood

\`knock-port knock\` (the project's client, default timing and retries: step 1, step 2, then \`--service-port 8080 --wait 5\`) from a fresh source address each time, ${r.floodKnocks} runs one every 0.25 s, during a SYN flood from random spoofed sources at 1× and 2× the daemon's measured SYN capacity (section 3, default \`step1_workers\`: ${r.defaultWorkers} here), on a fresh daemon each. Success: exit status 0 (step 2 answered OK and the service port accepted). Each run is a Node process started on the same cores as the flood. "Run time": the whole client run (p50 / p95), Node's start and \`--step1-wait\` (1 s) included.

Original (another run): ${ORIGINAL.knocks}.

${table(['backend', 'flood rate (× capacity)', 'flood (pkt/s)', 'knocks that opened the service', 'target', 'failures', 'run time p50 / p95', 'CPU (% of one core; machine shares of all cores)'], rows)}
`;
}

/** Knocks asked of each half of the latency bench (the same on every backend). */
const latencyAsked = (r) => Object.values(r.backends).find((b) => !failed(b.latency))?.latency.idle.asked ?? r.latencyKnocks;

const latencyLoads = (r) =>
  Object.entries(r.backends)
    .map(([name, b]) => `${name} ${loadNote(b.latency?.load)}`)
    .join('; ');

function latencySection(r) {
  const rows = [];
  for (const [name, b] of Object.entries(r.backends)) {
    const l = b.latency;
    if (failed(l)) {
      rows.push([name, '', '', errorNote(l), '', '', '']);
      continue;
    }
    const orig = ORIGINAL.latency[b.firewall];
    const floodLabel = `during a SYN flood at ${int(l.flood.flood.arrivedPps)}/s (${Math.round(r.latencyFloodShare * 100)} % of capacity)`;
    for (const [condition, figures] of [
      ['idle', l.idle],
      [floodLabel, l.flood],
    ]) {
      const idle = condition === 'idle';
      for (const [step, label] of [
        ['step1', 'step 1: segment sent → HTTPS port accepts'],
        ['step2', 'step 2: request sent → service port accepts'],
      ]) {
        const p = figures[step];
        rows.push([
          name,
          condition,
          label,
          `${figures[`${step}Ok`]}/${figures.knocks}${figures.asked > figures.knocks ? ` (time budget: ${figures.knocks} of ${figures.asked} made)` : ''}`,
          p3(p),
          idle
            ? `p99 < ${TARGET.idleP99} ms: ${verdict(p.p99 < TARGET.idleP99)}${p.p99 < TARGET.idleP99 ? '' : ` (a tail: p50 ${p.p50.toFixed(2)} ms; see docs/benchmarks.md, Known limits)`}`
            : 'reported',
          idle ? `${orig[step]} (n=50)` : '',
        ]);
      }
    }
  }
  return `## 5. Knock-to-open latency, idle and during a flood

Real TCP from the client namespace, one fresh source address per knock, knocks one after another (${latencyAsked(r)} idle, then as many more on the same daemon during a spoofed-source SYN flood at ${Math.round(r.latencyFloodShare * 100)} % of its measured capacity). Each half starts no knock after 60 s. t0 is the write of the request; "accepts" is the first completed connect to the port from the same address (a new attempt every 0.25 ms, the client sleeping in between rather than spinning, so figures are ±0.3 ms). Columns: p50 / p95 / p99. Machine load (1-minute average, start → end of each backend's run): ${latencyLoads(r)}.

${table(['backend', 'condition', 'measure', 'opened', 'p50 / p95 / p99', 'target', 'original p50 / p95 / p99 (another run)'], rows)}
`;
}

function grantBurstPart(r, grantBurstSection) {
  if (!r.grantBurstLoaded || !grantBurstSection)
    return '## 6. Grant burst: event-loop delay while granting\n\nNot run: `bench/grant-burst.js` was not available to this run.\n';
  const byBackend = Object.fromEntries(Object.entries(r.backends).map(([name, b]) => [name, b.grantBurst ?? { error: 'not run' }]));
  // The section is rendered by grant-burst.js itself; only its heading is numbered here.
  return grantBurstSection(byBackend).replace(/^## /, '## 6. ');
}

function scaleSection(r) {
  const rows = [];
  const verdicts = [];
  for (const [name, b] of Object.entries(r.backends)) {
    const s = b.scale;
    if (!s) continue;
    if (s.error) {
      verdicts.push(`- ${name}: ${errorNote(s)}`);
      continue;
    }
    for (const level of s.levels) {
      if (level.error) {
        rows.push([name, int(level.level), `**cannot hold them**: ${level.error}`, '', '', '', '']);
        continue;
      }
      rows.push([
        name,
        int(level.level),
        p3(level.grant),
        `${ms(level.service.p50, 3)} / ${ms(level.service.p99, 3)} ms`,
        `${ms(level.unprotected.p50, 3)} ms`,
        ratio(level.service.p50, level.unprotected.p50),
        level.ipsetMemoryMb !== undefined
          ? `ipset ${ms(level.ipsetMemoryMb, 1)} MB; slab +${ms(level.slabDeltaMb, 1)} MB`
          : `slab +${ms(level.slabDeltaMb, 1)} MB`,
      ]);
    }
    const measured = s.levels.filter((l) => !l.error);
    const first = measured[0];
    const last = measured.at(-1);
    const failed = s.levels.find((l) => l.error);
    const grantFlat = last.grant.p50 <= TARGET.flatRatio * first.grant.p50;
    const packetFlat = last.service.p50 / last.unprotected.p50 <= TARGET.flatRatio * (first.service.p50 / first.unprotected.p50);
    verdicts.push(
      `- ${name}: ${failed ? `**MISSED**: could not hold ${int(failed.level)} grants (measured up to ${int(last.level)}). ` : ''}grant p50 ${ms(first.grant.p50, 3)} ms at 0 → ${ms(last.grant.p50, 3)} ms at ${int(last.level)} (${ratio(last.grant.p50, first.grant.p50)}): flat ${verdict(grantFlat)}; service packet p50 vs no-rule port ${ratio(first.service.p50, first.unprotected.p50)} → ${ratio(last.service.p50, last.unprotected.p50)}: flat ${verdict(packetFlat)}. ` +
        `Session bookkeeping for ${int(s.sessions.count)} grants: +${ms(s.sessions.rssDeltaMb, 0)} MB RSS, ${ms(s.sessions.recordMs.p50 * 1000, 1)} µs per record (p50).`,
    );
  }
  return `## 7. Scale: live grants from 0 to 100,000

The firewall backend the daemon uses, driven in the gateway namespace (grants filled in bulk, then 200 single grants timed at each level). Packet cost: TCP connect time from a granted address to the service port, against a port with no rules, same run (400 connects each). "Flat" = within ×${TARGET.flatRatio} of the figure at 0. Kernel memory: the machine's slab growth (coarse), and ipset's own count.

${table(['backend', 'live grants', 'grant p50 / p95 / p99', 'service connect p50 / p99', 'no-rule port p50', 'service / no-rule', 'kernel memory'], rows)}

${verdicts.join('\n')}

Original (another run): ${ORIGINAL.grant}; ${ORIGINAL.packet}.
`;
}

/** Every flood run of a backend with its label: each one's peak RSS counts. */
function floodRuns(b) {
  const runs = [];
  for (const [kind, f] of Object.entries(failed(b.inspect) ? {} : b.inspect))
    if (!failed(f))
      for (const [workers, w] of Object.entries(f.workers))
        runs.push([`${FLOOD_NAMES[kind].split(' (')[0]}, ${workers} worker${workers === '1' ? '' : 's'}`, w]);
  for (const [kind, f] of Object.entries(failed(b.drop) ? {} : b.drop)) runs.push([FLOOD_NAMES[kind].split(' (')[0], f.daemon]);
  for (const [multiple, k] of Object.entries(failed(b.knocks) ? {} : b.knocks)) runs.push([`SYN flood at ${multiple}× with knocks`, k]);
  if (!failed(b.latency)) runs.push(['SYN flood during the latency run', b.latency.flood.flood]);
  return runs;
}

function memorySection(r) {
  const rows = [];
  for (const [name, b] of Object.entries(r.backends)) {
    const peaks = floodRuns(b).map(([label, run]) => [label, run.peakRssMb]);
    const worst = Math.max(...peaks.map(([, v]) => v).filter(Number.isFinite));
    rows.push([
      name,
      mb(b.latency?.idleRssMb),
      peaks.map(([label, v]) => `${label}: ${mb(v)}`).join('; '),
      `< ${TARGET.rssMb} MB: ${peaks.length ? verdict(worst < TARGET.rssMb) : 'not measured'}${peaks.length && worst >= TARGET.rssMb ? ' (bounded by: one JavaScript heap per thread: the main thread, each step-1 worker and the libnftables thread; compare the 1-worker rows)' : ''}`,
      ORIGINAL.memory,
    ]);
  }
  return `## 8. Daemon memory (RSS)

Idle: one second after start (default \`step1_workers\`). Peak: highest RSS of the daemon process sampled every 200 ms during each flood of sections 2-5; step-1 worker threads are threads of the daemon, so their memory is inside this one figure.

${table(['backend', 'idle', 'peak under each flood', 'target', 'original (another run)'], rows)}
`;
}

const XDP_FLOOD_NAMES = {
  syn: `${FLOOD_NAMES.syn}: SYN-ACKs sent from XDP`,
  junk: `${FLOOD_NAMES.junk}: dropped at XDP`,
  wrongPath: `${FLOOD_NAMES.wrongPath}: dropped at XDP`,
};

/** One XDP flood row: the program's rate against the bare XDP_DROP program and the kernel alone. */
function xdpFloodRow(backend, kind, f) {
  const x = f.run;
  const isSyn = kind === 'syn';
  const target = isSyn ? TARGET.xdpSynRatio : TARGET.xdpDropRatio;
  const short = notMeasured(x, referencePps(f.kernel)) ?? notMeasured(x, referencePps(f.xdpDrop), 'the XDP_DROP reference');
  const met = x.handledPps >= target * f.xdpDrop.pps && (isSyn ? x.cpuPercent < TARGET.xdpDaemonCpu : x.inspected === 0 && x.arrived === 0);
  const goal = `≥ ×${target} of XDP_DROP${isSyn ? `, daemon CPU < ${TARGET.xdpDaemonCpu} %` : ', 0 reach the daemon'}`;
  return [
    backend,
    XDP_FLOOD_NAMES[kind],
    `${int(referencePps(f.kernel))} / ${int(referencePps(f.xdpDrop))} / ${int(x.offeredPps)}`,
    `${int(f.kernel.pps)} / ${int(f.xdpDrop.pps)}`,
    `**${int(x.handledPps)}**`,
    short ? 'not measured' : `${ratio(x.handledPps, f.xdpDrop.pps)} / ${ratio(x.handledPps, f.kernel.pps)}`,
    short ?? `${goal}: ${verdict(met)}${met ? '' : ` (${bound(x)})`}`,
    `${int(x.arrived)} / ${int(x.inspected)}`,
    isSyn ? int(x.spoofedReplies / x.seconds) : '',
    cpuNote(x),
  ];
}

/** One knock row: `knock-port knock` during a SYN flood at the sender's maximum, with or without XDP. */
function xdpKnockRow(backend, label, k, synReference) {
  if (failed(k)) return [backend, label, errorNote(k), '', '', '', '', ''];
  const success = k.knocks ? k.knocksOk / k.knocks : NaN;
  const short = notMeasured(k, synReference, 'the reference beside as many knock clients');
  const failures = Object.entries(k.failureCodes ?? {})
    .map(([code, count]) => `${count}× exit ${code}`)
    .join(', ');
  const answered = k.xdp?.syn_answered ? `, ${int(k.xdp.syn_answered / k.seconds)} answered from XDP` : '';
  return [
    backend,
    label === 'xdp' ? 'with XDP' : 'without XDP (`step1_xdp: off`)',
    `${offered(k)}, ${int(k.inspectedPps)} inspected by the daemon${answered}`,
    `${k.knocksOk}/${k.knocks} (${pct(success * 100)})`,
    short ?? (label === 'xdp' ? `≥ 99 %: ${verdict(success >= TARGET.knockSuccess)}${success >= TARGET.knockSuccess ? '' : ` (${bound(k)})`}` : 'reported'),
    failures || 'none',
    `${ms(k.knockMs?.p50 / 1000)} / ${ms(k.knockMs?.p95 / 1000)} s`,
    cpuNote(k),
  ];
}

const loadNote = (load) => (Array.isArray(load) ? `${load[0].toFixed(2)} → ${load[1].toFixed(2)}` : 'n/a');

function xdpSection(r) {
  const x = r.xdp;
  if (x === undefined) return '';
  const heading = '## 9. The step-1 XDP front (`step1_xdp: auto`)';
  if (failed(x)) return `${heading}\n\n${errorNote(x)}\n`;
  const floods = [];
  const knocks = [];
  for (const [name, b] of Object.entries(x.backends)) {
    if (failed(b.floods)) floods.push([name, '', errorNote(b.floods), '', '', '', '', '', '', '']);
    else for (const [kind, f] of Object.entries(b.floods)) floods.push(xdpFloodRow(name, kind, f));
    if (failed(b.knocks)) {
      knocks.push([name, '', errorNote(b.knocks), '', '', '', '', '']);
      continue;
    }
    const reference = b.knocks.reference;
    if (reference)
      knocks.push([
        name,
        'none: one nft rule drops the flood (the reference)',
        `${offered(reference)} beside ${reference.knocks} knock clients`,
        '(no answer: the reference)',
        '',
        '',
        '',
        `sender ${pct(reference.generatorCpuPercent)}`,
      ]);
    for (const label of ['xdp', 'kernel']) knocks.push(xdpKnockRow(name, label, b.knocks[label], referencePps(reference)));
  }
  const loads = Object.entries(x.backends)
    .map(([name, b]) => `${name} ${loadNote(b.load)}`)
    .join('; ');
  return `${heading}

The daemon attaches its XDP program to the gateway's veth (\`auto\` takes generic mode there; a NIC with a native driver would run it in the driver). Each flood runs ${x.floodSeconds ?? r.floodSeconds} s at the sender's full speed, on a fresh daemon, after two references on the same flood, same run: one nft rule dropping it at prerouting (the kernel alone, as in section 2) and a bare XDP_DROP program attached in the same mode. Offered: packets the client's interface sent (its kernel counter) in each of the three runs; a run whose sender delivered less than half of another's is not compared. Handled/s: the program's own counters (\`knockport_step1_xdp_packets_total\`): \`syn_answered\` for the SYN flood, the drop outcomes for the others. "Reached": packets that passed the program to the kernel's rules (an nft counter at prerouting) and packets the daemon's step-1 workers inspected. SYN-ACKs back: packets addressed to the spoofed sources that reached the client, which drops them at its interface's ingress (as it does in every section). Machine load (1-minute average, start → end of each backend's part): ${loads}.

${table(['backend', 'flood', 'offered (pkt/s): kernel alone / XDP_DROP / XDP front', 'references: kernel alone / XDP_DROP (pkt/s)', 'handled by the XDP front (pkt/s)', '/ XDP_DROP, / kernel alone', 'target', 'reached the kernel rules / the daemon', 'SYN-ACKs back at the client (pkt/s)', 'CPU (% of one core; machine shares of all cores)'], floods)}

Valid knocks during a spoofed SYN flood at the sender's maximum rate: \`knock-port knock\` as in section 4, ${x.floodKnocks ?? r.floodKnocks} runs one every 0.25 s, on a fresh daemon each, with XDP and, beside it, without. The knock clients are Node processes on the cores the sender uses, so the sender's rate is compared with a reference of its own, same run: the same flood and as many knock clients with no daemon, one nft rule dropping the flood; a row whose sender delivered less than half of that is not measured.

${table(['backend', 'daemon', 'flood (pkt/s)', 'knocks that opened the service', 'target', 'failures', 'run time p50 / p95', 'CPU (% of one core; machine shares of all cores)'], knocks)}
`;
}

/** Which sections a later, partial run replaced, and when. */
function rerunNote(r) {
  const names = { xdp: 'section 9', latency: 'section 5' };
  return (r.reruns ?? [])
    .map(
      (x) =>
        `\n**${x.sections.map((s) => names[s] ?? s).join(' and ')} ${x.sections.length > 1 ? 'come' : 'comes'} from a later run**: \`${x.command}\` on ${x.date} (${int(x.durationSeconds)} s, ${loadAtStartNote(x.loadAtStart)}); the rest from the run above.`,
    )
    .join('');
}

const loadAtStartNote = (load) => (Number.isFinite(load) ? `machine load ${load.toFixed(2)} at the start` : 'machine load at the start not recorded');

/** Renders a section under the verdict rule of the run it comes from (a later partial run, or the main one). */
function underRunOf(r, section, render) {
  const rerun = (r.reruns ?? []).findLast((x) => x.sections.includes(section));
  noVerdictBecause = busyAtStart(rerun ? rerun.loadAtStart : r.loadAtStart);
  try {
    return render(r);
  } finally {
    noVerdictBecause = busyAtStart(r.loadAtStart);
  }
}

export function renderResults(r, grantBurstSection) {
  const m = r.machine;
  noVerdictBecause = busyAtStart(r.loadAtStart);
  return `# knock-port benchmark results

Generated by \`${r.command ?? 'sudo npm run bench'}\` on ${r.date} (${int(r.durationSeconds)} s, ${loadAtStartNote(r.loadAtStart)}). Do not edit by hand.${rerunNote(r)}
A run that starts at a 1-minute load average of ${VERDICT_MAX_LOAD} or more (other work on the same cores) gives its figures but no verdicts.

Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB RAM, kernel ${m.kernel}, Node ${m.node}. Load generators, client and daemon share these cores (network namespaces on one host), as in the original's baseline. The gateway's veth spreads received packets over every core (receive packet steering, as a multiqueue NIC would), so the kernel's per-CPU fan-out reaches every step-1 worker; the kernel references run with the same setting. The daemon runs with its default \`step1_workers: auto\` (${r.defaultWorkers} workers here) except where section 3 sets 1 and ${r.workersN}.
Same-run references are given as ratios (×). Figures for the original knock-port come from its baseline, measured in another run on a machine of the same kind (2 vCPU, kernel 6.18): compare them as orders of magnitude, not ratios.

${inspectorSection(r)}
${dropSection(r)}
${inspectSection(r)}
${knocksSection(r)}
${underRunOf(r, 'latency', latencySection)}
${grantBurstPart(r, grantBurstSection)}
${scaleSection(r)}
${memorySection(r)}
${underRunOf(r, 'xdp', xdpSection)}`;
}
