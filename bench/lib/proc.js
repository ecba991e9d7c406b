/** Process and machine figures read from /proc: CPU time, RSS, the host description. */
import { readFileSync, readdirSync } from 'node:fs';
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

/**
 * Samples a process every `intervalMs` until stopped: CPU % of one core over the span (the
 * whole process, and each thread: step-1 workers are threads of the daemon and share its RSS),
 * peak RSS, and how the machine's cores spent the span (softirq is the kernel's packet work).
 */
export function startSampler(pid, intervalMs = 200) {
  const startedAt = process.hrtime.bigint();
  const startCpu = cpuSeconds(pid);
  const startThreads = threadCpu(pid);
  const startMachine = machineCpu();
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
      const threads = [];
      try {
        cpu = ((cpuSeconds(pid) - startCpu) / seconds) * 100;
        peakRss = Math.max(peakRss, memoryMb(pid).rss);
        for (const [tid, t] of Object.entries(threadCpu(pid))) {
          const percent = ((t.seconds - (startThreads[tid]?.seconds ?? 0)) / seconds) * 100;
          if (percent >= 1) threads.push({ tid: Number(tid), name: t.name, percent });
        }
      } catch {
        /* ended */
      }
      threads.sort((a, b) => b.percent - a.percent);
      const endMachine = machineCpu();
      const machineSeconds = Object.values(endMachine).reduce((a, b) => a + b, 0) - Object.values(startMachine).reduce((a, b) => a + b, 0);
      const share = (key) => (machineSeconds > 0 ? ((endMachine[key] - startMachine[key]) / machineSeconds) * 100 : NaN);
      const machineShare = {
        user: share('user'),
        system: share('system'),
        softirq: share('softirq') + share('irq'),
        idle: share('idle'),
        steal: share('steal'),
      };
      return { cpuPercent: cpu, threads, machine: machineShare, peakRssMb: peakRss, seconds };
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

/** CPU seconds (utime + stime) of each thread of a process, by thread id, with its name. */
export function threadCpu(pid) {
  const threads = {};
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      threads[tid] = { name, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND };
    } catch {
      /* the thread ended */
    }
  }
  return threads;
}

/** A process and every descendant (walking /proc/<pid>/task/<tid>/children). */
function processTree(pid, out = []) {
  out.push(pid);
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) processTree(Number(child), out);
    } catch {
      /* ended */
    }
  }
  return out;
}

/**
 * Follows the CPU time of a process tree (a load generator and what it forks) by polling:
 * processes come and go, so the last figure seen for each one is kept. `add(pid)` follows
 * another root (the replay starts one sender per pass).
 */
export function treeCpuTracker(intervalMs = 100) {
  const roots = new Set();
  const last = new Map();
  const poll = () => {
    for (const root of roots) {
      for (const pid of processTree(root)) {
        try {
          last.set(pid, cpuSeconds(pid));
        } catch {
          /* ended between the walk and the read */
        }
      }
    }
  };
  const timer = setInterval(poll, intervalMs);
  return {
    add(pid) {
      roots.add(pid);
      poll();
    },
    /** Polls once more (call before the processes are stopped), then the total CPU seconds seen. */
    sample() {
      poll();
      return [...last.values()].reduce((a, b) => a + b, 0);
    },
    stop() {
      clearInterval(timer);
      return [...last.values()].reduce((a, b) => a + b, 0);
    },
  };
}

/** Whole-machine CPU time by kind from /proc/stat, in seconds. */
export function machineCpu() {
  const f = /^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))[1].split(/\s+/).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f.map((v) => v / TICKS_PER_SECOND);
  return { user: user + nice, system, idle: idle + iowait, irq, softirq, steal: steal ?? 0 };
}

/** Packets the kernel dropped for want of room in the per-CPU receive backlog (every namespace). */
export function backlogDrops() {
  return readFileSync('/proc/net/softnet_stat', 'utf8')
    .trim()
    .split('\n')
    .reduce((sum, line) => sum + parseInt(line.trim().split(/\s+/)[1], 16), 0);
}
