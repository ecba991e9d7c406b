/**
 * The step-1 XDP front (`step1_xdp`): loads the program, proves it builds the daemon's own
 * SYN-ACK on this kernel, shares the cookie secret with it and attaches it to every interface
 * `interface_ext` matches (and, each maintenance tick, to those that appear later). An
 * accelerator only: whatever it cannot do, the kernel's rules and the step-1 workers still do,
 * and a daemon that stops or dies takes its links with it (the kernel detaches them).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { Step1XdpProgram, XdpUnavailableError, selfTestXdp, type XdpAttachMode, type XdpCounters, type XdpSettings } from '../capture/xdp.js';
import { interfaceMatches } from '../config/interface-name.js';
import type { Config, Step1XdpMode } from '../config/types.js';
import type { XdpHealth } from '../control/protocol.js';
import { SYS_CLASS_NET } from '../firewall/interface-presence.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import { COOKIE_SECRET_BYTES } from '../step1/cookie.js';
import { describeError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

const run = promisify(execFile);
/** ARPHRD_ETHER: the program reads an Ethernet header (ppp, wg and tun interfaces have none). */
const ETHERNET = '1';

export interface XdpFrontParts {
  cookieSecret: Buffer;
  problems: ProblemMemory;
  logger: Logger;
}

interface Attachment {
  ifindex: number;
  mode: XdpAttachMode;
}

export class Step1XdpFront {
  private program: Step1XdpProgram | undefined;
  private config: Config | undefined;
  /** Interface name → where the program runs on it. */
  private readonly attached = new Map<string, Attachment>();
  /** Interface name → why it is left to the kernel rules alone (logged once). */
  private readonly leftOut = new Map<string, string>();
  private unavailable: string | undefined;
  /** The self-test's counts, not the traffic's. */
  private baseline: XdpCounters | undefined;

  constructor(private readonly parts: XdpFrontParts) {}

  /** Loads and attaches per `step1_xdp`; never throws (the kernel path serves step 1 without it). */
  async start(config: Config): Promise<void> {
    this.config = config;
    const mode = config.global.step1Xdp;
    if (mode === 'off') return;
    try {
      const program = Step1XdpProgram.load();
      this.program = program;
      const settings = xdpSettings(config, this.parts.cookieSecret);
      const wrong = selfTestXdp(program, settings);
      if (wrong !== undefined) throw new XdpUnavailableError(`the program's SYN-ACK differs from the daemon's on this kernel (${wrong})`);
      this.baseline = program.counters();
      program.setAddresses(localAddresses());
    } catch (err) {
      this.program?.close();
      this.program = undefined;
      this.unavailable = describeError(err);
      this.report(mode, unavailableMessage(this.unavailable));
      return;
    }
    await this.attachNew();
    const { logger } = this.parts;
    const where = [...this.attached].map(([name, a]) => `${name} (${a.mode})`);
    logger.info(
      { step1Xdp: mode, attached: Object.fromEntries([...this.attached].map(([name, a]) => [name, a.mode])) },
      where.length > 0 ? `step-1 XDP on ${where.join(', ')}` : 'step-1 XDP is attached nowhere yet',
    );
  }

  /** Each maintenance tick: the clock offset, this host's addresses, interfaces that came or went. */
  async refresh(): Promise<void> {
    const program = this.program;
    if (this.unavailable !== undefined && this.config) this.keepProblem(this.config.global.step1Xdp, unavailableMessage(this.unavailable));
    if (!program || !this.config) return;
    try {
      program.configure(xdpSettings(this.config, this.parts.cookieSecret));
      program.setAddresses(localAddresses());
    } catch (err) {
      this.parts.problems.note(`step-1 XDP maps could not be updated: ${describeError(err)}`);
    }
    const present = new Set(matchingInterfaces(this.config.global.interfaceExt));
    for (const name of this.leftOut.keys()) if (!present.has(name)) this.forgetLeftOut(name);
    for (const [name, attachment] of this.attached) {
      if (present.has(name) && readIfindex(name) === attachment.ifindex) continue;
      program.detach(attachment.ifindex); // gone (the kernel dropped the link) or renamed
      this.attached.delete(name);
    }
    await this.attachNew();
  }

  /** A reload: the new settings; another mode or interface means attaching afresh. */
  async reconfigure(next: Config): Promise<void> {
    const previous = this.config?.global;
    if (previous && previous.step1Xdp === next.global.step1Xdp && previous.interfaceExt === next.global.interfaceExt) {
      this.config = next;
      await this.refresh();
      return;
    }
    this.stop();
    await this.start(next);
  }

  health(): XdpHealth | undefined {
    const mode = this.config?.global.step1Xdp;
    if (mode === undefined || mode === 'off') return undefined;
    const notes = this.unavailable !== undefined ? [this.unavailable] : [...this.leftOut].map(([name, why]) => `${name}: ${why}`);
    return {
      configured: mode,
      attached: [...this.attached].map(([name, a]) => ({ interface: name, mode: a.mode })),
      notes,
      counters: this.counters() ?? {},
    };
  }

  /** Packets since start per outcome, or undefined when the program is not loaded. */
  counters(): XdpCounters | undefined {
    if (!this.program) return undefined;
    const now = this.program.counters();
    const base = this.baseline;
    return base ? (Object.fromEntries(Object.entries(now).map(([name, n]) => [name, n - base[name as keyof XdpCounters]])) as XdpCounters) : now;
  }

  /** For the start log: where it runs (`eth0 native`), `off`, or `none`. */
  summary(): string {
    if (this.config?.global.step1Xdp === 'off') return 'off';
    const where = [...this.attached].map(([name, a]) => `${name} ${a.mode}`);
    return where.length > 0 ? where.join(', ') : 'none';
  }

  /** Interfaces per mode, for the metrics. */
  attachedModes(): XdpAttachMode[] {
    return [...this.attached.values()].map((a) => a.mode);
  }

  /**
   * Interfaces `interface_ext` matches that the program does not run on (the kernel rules alone
   * serve step 1 there): each one left out, or all of them when the program could not load.
   */
  notAttached(): number {
    const config = this.config;
    if (config === undefined || config.global.step1Xdp === 'off') return 0;
    if (this.program === undefined) return matchingInterfaces(config.global.interfaceExt).length;
    return this.leftOut.size;
  }

  /** Detaches what it attached, unloads the program. */
  stop(): void {
    this.program?.close();
    this.program = undefined;
    this.attached.clear();
    for (const name of this.leftOut.keys()) this.forgetLeftOut(name);
    if (this.unavailable !== undefined) this.parts.problems.clear(unavailableMessage(this.unavailable));
    this.unavailable = undefined;
  }

  private async attachNew(): Promise<void> {
    const program = this.program;
    const mode = this.config?.global.step1Xdp;
    if (!program || !this.config || mode === undefined || mode === 'off') return;
    for (const name of matchingInterfaces(this.config.global.interfaceExt)) {
      if (this.attached.has(name)) continue;
      const outcome = await attachOne(program, name, mode);
      if (typeof outcome === 'string') {
        const message = leftOutMessage(name, outcome);
        if (this.leftOut.get(name) === outcome) this.keepProblem(mode, message);
        else {
          this.forgetLeftOut(name);
          this.report(mode, message);
        }
        this.leftOut.set(name, outcome);
        continue;
      }
      this.forgetLeftOut(name);
      this.attached.set(name, outcome);
      this.parts.logger.info({ interface: name, mode: outcome.mode }, `step-1 XDP attached to ${name} (${outcome.mode})`);
    }
  }

  /** `auto` falling back is expected (info); an explicit mode that cannot run is a problem. */
  private report(mode: Step1XdpMode, message: string): void {
    if (mode === 'auto') {
      this.parts.logger.info(message);
      return;
    }
    this.parts.logger.error(message);
    this.parts.problems.note(message);
  }

  /** Each tick it still holds: health forgets a problem not seen for a minute. */
  private keepProblem(mode: Step1XdpMode, message: string): void {
    if (mode === 'native' || mode === 'generic') this.parts.problems.note(message);
  }

  /** The interface is attached now, gone, or left out for another reason: its problem is over. */
  private forgetLeftOut(name: string): void {
    const why = this.leftOut.get(name);
    if (why === undefined) return;
    this.parts.problems.clear(leftOutMessage(name, why));
    this.leftOut.delete(name);
  }
}

function unavailableMessage(why: string): string {
  return `step-1 XDP is not used: ${why}; the kernel rules serve step 1 alone`;
}

function leftOutMessage(name: string, why: string): string {
  return `step-1 XDP is not attached to ${name}: ${why}; the kernel rules serve step 1 there`;
}

function xdpSettings(config: Config, cookieSecret: Buffer): XdpSettings {
  const g = config.global;
  return { cookieSecret, step1Port: g.step1Port, step1Path: g.step1Path, handshake: g.step1Handshake, reply: g.step1Reply, ipv6: g.ipv6 };
}

/**
 * What `knock-port check` does with `step1_xdp` on: loads the program into this kernel (the
 * verifier runs), proves on a test SYN that it answers with the daemon's own SYN-ACK for this
 * config, and unloads it, attaching it nowhere. Returns why it cannot run here, or undefined.
 */
export function verifyXdpProgram(config: Config): string | undefined {
  let program: Step1XdpProgram | undefined;
  try {
    program = Step1XdpProgram.load();
    const wrong = selfTestXdp(program, xdpSettings(config, randomBytes(COOKIE_SECRET_BYTES)));
    return wrong === undefined ? undefined : `the program's SYN-ACK differs from the daemon's on this kernel (${wrong})`;
  } catch (err) {
    return describeError(err);
  } finally {
    program?.close();
  }
}

/**
 * Attaches in the configured mode; `auto` tries native, then generic. Native XDP_TX on a veth
 * is dropped unless its peer runs XDP or GRO, which this host cannot see: `auto` takes generic
 * there. Returns why not when it attached nowhere.
 */
async function attachOne(program: Step1XdpProgram, name: string, mode: Exclude<Step1XdpMode, 'off'>): Promise<Attachment | string> {
  const ifindex = readIfindex(name);
  if (ifindex === undefined) return 'the interface went away';
  if (readSys(name, 'type') !== ETHERNET) return 'not an Ethernet interface';
  const order: XdpAttachMode[] = mode === 'auto' ? ((await isVeth(name)) ? ['generic'] : ['native', 'generic']) : [mode];
  const failures: string[] = [];
  for (const attempt of order) {
    try {
      program.attach(ifindex, attempt);
      return { ifindex, mode: attempt };
    } catch (err) {
      failures.push(`${attempt}: ${describeError(err)}`);
    }
  }
  return failures.join('; ');
}

function matchingInterfaces(pattern: string): string[] {
  try {
    return readdirSync(SYS_CLASS_NET).filter((name) => interfaceMatches(pattern, name));
  } catch {
    return [];
  }
}

function readSys(name: string, file: string): string | undefined {
  try {
    return readFileSync(`${SYS_CLASS_NET}/${name}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readIfindex(name: string): number | undefined {
  const text = readSys(name, 'ifindex');
  return text === undefined ? undefined : Number(text);
}

async function isVeth(name: string): Promise<boolean> {
  try {
    const { stdout } = await run('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
    return /"info_kind"\s*:\s*"veth"/.test(stdout);
  } catch {
    return false;
  }
}

/** Every address of this host, as the rules' `fib daddr type local` sees them. */
function localAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
}
