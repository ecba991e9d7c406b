/** Process and machine figures read from /proc: CPU time, RSS, the host description. */
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Resident set size (current and peak since start), in MB. */
export function memoryMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** Samples a process every `intervalMs` until stopped: CPU % of one core over the span, peak RSS. */
export function startSampler(pid, intervalMs = 200) {
  const startedAt = process.hrtime.bigint();
  const startCpu = cpuSeconds(pid);
  let peakRss = memoryMb(pid).rss;
  const timer = setInterval(() => {
    try {
      peakRss = Math.max(peakRss, memoryMb(pid).rss);
    } catch {
      /* the process ended; stop() reports what was seen */
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
      let cpu = NaN;
      try {
        cpu = ((cpuSeconds(pid) - startCpu) / seconds) * 100;
        peakRss = Math.max(peakRss, memoryMb(pid).rss);
      } catch {
        /* ended */
      }
      return { cpuPercent: cpu, peakRssMb: peakRss, seconds };
    },
  };
}

export function machine() {
  const cpu = cpus();
  const osRelease = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  return {
    cpuModel: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    kernel: osRelease,
    node: process.version,
  };
}

/** Kernel memory in slabs (whole machine), in MB: a coarse view of set memory. */
export function slabMb() {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  return Number(/^Slab:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? NaN) / 1024;
}
