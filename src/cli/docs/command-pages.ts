/**
 * The man pages of the commands, read from the commander tree main.ts builds: knock-port(8)
 * (every command and option, with their examples) and knock-port-knock(1) (the client).
 */
import type { Argument, Command, Option } from 'commander';
import { CREDENTIAL_ENV } from '../../client/credentials.js';
import { ExitCode, KNOCK_EXIT_MEANINGS } from '../../client/exit-codes.js';
import { SETUP_EXIT_MEANINGS } from '../../shared/errors.js';
import { examplesOf } from '../help.js';
import { bold, escapeRoff, italic, manPage, markdownToRoff, safeLine } from './roff.js';

/** The client's command, which has its own page in section 1. */
const CLIENT_COMMAND = 'knock';

const COMMON_EXIT_MEANINGS: Record<number, string> = {
  [ExitCode.ok]: 'success',
  [ExitCode.failed]: 'a runtime failure: an invalid config, a daemon that does not answer or is unhealthy, a file that cannot be read',
  [ExitCode.usage]: 'a usage error: an unknown command or option, a bad or missing argument, an invalid combination',
};

/** knock-port(8): the daemon and every command of the program. */
export function programManPage(program: Command): string {
  const commands = program.commands.filter((command) => command.name() !== CLIENT_COMMAND);
  return manPage({ name: 'knock-port', section: 8, manual: 'System Administration' }, [
    ['.SH NAME', 'knock-port \\- two-step port knocking for Linux gateways'],
    [
      '.SH SYNOPSIS',
      `${bold('knock-port')} ${italic('command')} [${italic('options')}]`,
      '.br',
      `${bold('knock-port')} ${bold('--help')} | ${bold('--version')}`,
    ],
    [
      '.SH DESCRIPTION',
      bold('knock-port'),
      "hides a gateway's service ports behind a two-step knock: a stealth single-packet HTTP request (step 1),",
      "read from the kernel's NFQUEUE or NFLOG, opens the HTTPS port for a few seconds; a request there with the",
      "user's key (step 2) opens the service for that client, with a grant that expires in the kernel",
      '(nftables, or iptables with ipset).',
      '.PP',
      'The Debian package runs the daemon as the systemd service',
      `${bold('knock-port.service')},`,
      'as the unprivileged',
      bold('knock-port'),
      'user, with the config',
      `${italic('/etc/knock-port/config.yaml')}.`,
      'A first run:',
      `${bold('knock-port init')},`,
      `${bold('knock-port user add')} ${italic('NAME')} ${bold('--app')} ${italic('APP')},`,
      `${bold('knock-port check')},`,
      `then ${bold('systemctl enable --now knock-port')}.`,
    ],
    ['.SH COMMANDS', ...commands.flatMap((command) => commandRoff(command, ['knock-port']))],
    ['.SS knock', `knock as a client (step 1, then step 2): see ${bold('knock-port-knock')}(1).`],
    [
      '.SH EXIT STATUS',
      ...exitRoff({ ...COMMON_EXIT_MEANINGS, ...SETUP_EXIT_MEANINGS }),
      '.PP',
      `${bold('knock')} has codes of its own, 3 to 9: see ${bold('knock-port-knock')}(1).`,
    ],
    [
      '.SH SIGNALS',
      'The daemon',
      `(${bold('knock-port run')})`,
      'handles:',
      '.TP',
      bold('SIGTERM, SIGINT'),
      'stop: the firewall stays closed, and the grants expire in the kernel.',
      '.TP',
      bold('SIGHUP'),
      'reload the config, the certificate and the key; what fails a check keeps the running one',
      `(${bold('systemctl reload knock-port')}).`,
    ],
    [
      '.SH FILES',
      ...fileRoff('/etc/knock-port/config.yaml', `the config (${bold('-c')}, the default); see ${bold('knock-port.yaml')}(5)`),
      ...fileRoff('/etc/knock-port/conf.d/*.yaml, /etc/knock-port/users.d/*.yaml', 'config drop-ins, read after the config in name order'),
      ...fileRoff('/etc/knock-port/tls/', "the step-2 certificate and key the package's unit names"),
      ...fileRoff('/var/lib/knock-port', 'the state: live grants, kept across restarts, and the record of the firewall installed'),
      ...fileRoff('/run/knock-port/control.sock', "the running daemon's control socket"),
      ...fileRoff('/usr/share/doc/knock-port/', 'the README, the operator manual and the example config'),
    ],
    ['.SH SEE ALSO', '.BR knock-port.yaml (5),', '.BR knock-port-knock (1),', '.BR nft (8),', '.BR systemctl (1)'],
  ]);
}

/** knock-port-knock(1): the client. */
export function clientManPage(program: Command): string {
  const knock = program.commands.find((command) => command.name() === CLIENT_COMMAND);
  if (!knock) throw new Error(`the program has no ${CLIENT_COMMAND} command`);
  return manPage({ name: 'knock-port-knock', section: 1, manual: 'User Commands' }, [
    ['.SH NAME', `knock-port-knock \\- ${escapeRoff(knock.description())}`],
    ['.SH SYNOPSIS', `${bold('knock-port knock')} ${bold('--app')} ${italic('APP')} [${italic('options')}]`],
    [
      '.SH DESCRIPTION',
      'Opens a service behind a knock-port gateway for this host: sends step 1 (a stealth HTTP request),',
      'then step 2 (HTTPS), and optionally waits until the service port accepts connections.',
      'It needs no native code and runs on Linux, macOS and Windows.',
    ],
    ['.SH OPTIONS', ...knock.options.filter((option) => !option.hidden).flatMap(optionRoff)],
    [
      '.SH ENVIRONMENT',
      ...Object.values(CREDENTIAL_ENV).flatMap((name) => [
        '.TP',
        bold(name),
        'the value of the flag of the same meaning, when neither it nor the key file gives one',
      ]),
    ],
    [
      '.SH FILES',
      '.TP',
      italic('key file'),
      `(${bold('--key-file')}): ${bold('http_key=')}, ${bold('https_key=')} and optionally ${bold('otp_secret=')} and ${bold('totp=yes')} lines, mode 600;`,
      `${bold('knock-port user add')} prints one.`,
    ],
    ['.SH EXAMPLES', ...examplesRoff(knock)],
    ['.SH EXIT STATUS', ...exitRoff(KNOCK_EXIT_MEANINGS)],
    ['.SH SEE ALSO', '.BR knock-port (8),', '.BR curl (1)'],
  ]);
}

function commandRoff(command: Command, parents: readonly string[]): string[] {
  const path = [...parents, command.name()];
  if (command.commands.length > 0) {
    return [`.SS ${escapeRoff(path.join(' '))}`, safeLine(escapeRoff(command.description())), ...command.commands.flatMap((sub) => commandRoff(sub, path))];
  }
  return [
    `.SS ${escapeRoff([...path, ...command.registeredArguments.map(argumentName)].join(' '))}`,
    safeLine(escapeRoff(command.description())),
    ...command.registeredArguments.flatMap(argumentRoff),
    ...command.options.filter((option) => !option.hidden).flatMap(optionRoff),
    ...examplesRoff(command),
  ];
}

function argumentName(argument: Argument): string {
  const name = `${argument.name()}${argument.variadic ? '...' : ''}`;
  return argument.required ? `<${name}>` : `[${name}]`;
}

function argumentRoff(argument: Argument): string[] {
  return ['.TP', italic(argumentName(argument)), safeLine(escapeRoff(argument.description))];
}

function optionRoff(option: Option): string[] {
  const notes = [
    ...(option.argChoices ? [`one of ${option.argChoices.join(', ')}`] : []),
    ...(option.defaultValue !== undefined && !option.negate ? [`default: ${String(option.defaultValue)}`] : []),
    ...(option.mandatory ? ['required'] : []),
  ];
  const description = notes.length > 0 ? `${option.description} (${notes.join('; ')})` : option.description;
  return ['.TP', flagsRoff(option.flags), safeLine(escapeRoff(description))];
}

/** `-c, --config <file>`: the flags bold, the value italic. */
function flagsRoff(flags: string): string {
  return flags.replace(/(<[^>]+>|\[[^\]]+\])|([^<[]+)/g, (_all, value: string | undefined, words: string | undefined) =>
    value !== undefined ? italic(value) : bold(words!),
  );
}

function examplesRoff(command: Command): string[] {
  return examplesOf(command).flatMap(({ command: line, what }) => ['.PP', `${markdownToRoff(what)}:`, '.RS', '.nf', bold(line), '.fi', '.RE']);
}

function exitRoff(meanings: Record<number, string>): string[] {
  return Object.entries(meanings).flatMap(([code, meaning]) => ['.TP', bold(code), safeLine(escapeRoff(meaning))]);
}

function fileRoff(path: string, what: string): string[] {
  return ['.TP', italic(path), what];
}
