/**
 * What the demo prints. Full mode explains each step and shows every command with its output;
 * quiet mode prints one line per step.
 */

/** A command line as it would be typed in a shell (single quotes where needed). */
export function shellLine(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`)).join(' ');
}

export class DemoReport {
  private current = { number: 0, title: '' };

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly quiet: boolean,
    private readonly totalSteps: number,
  ) {}

  /** A paragraph of explanation (full mode only). */
  say(...lines: string[]): void {
    if (!this.quiet) this.out.write(`${lines.join('\n')}\n`);
  }

  /** An indented note under the current step (full mode only). */
  note(...lines: string[]): void {
    this.say(...lines.map((line) => `   ${line}`));
  }

  step(number: number, title: string): void {
    this.current = { number, title };
    this.say('', `[${number}/${this.totalSteps}] ${title}`);
  }

  /** A command run on one of the hosts, then what it printed. */
  command(host: string, argv: readonly string[], output: string): void {
    this.say(`   ${host}$ ${shellLine(argv)}`);
    for (const line of output.trimEnd().split('\n').filter(Boolean)) this.say(`     ${line}`);
  }

  /** The current step did what it should: one line in both modes. */
  passed(detail: string): void {
    if (this.quiet) this.out.write(`ok  [${this.current.number}/${this.totalSteps}] ${this.current.title}\n`);
    else this.out.write(`   ok: ${detail}\n`);
  }

  /** A `label  value` line of the set-up summary; `always` prints it in quiet mode too. */
  setting(label: string, value: string, options: { always?: boolean } = {}): void {
    if (this.quiet) {
      if (options.always) this.out.write(`${label}: ${value}\n`);
    } else this.out.write(`   ${label.padEnd(12)} ${value}\n`);
  }

  /** Always printed. */
  always(text: string): void {
    this.out.write(`${text}\n`);
  }
}
