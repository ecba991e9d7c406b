/**
 * Bash and zsh completion scripts made from the commander tree: every command, subcommand and
 * option, the choices of an option that has them, and files for the other option values.
 */
import type { Command, Option } from 'commander';

interface Node {
  /** `totp new`; empty for the program itself. */
  path: string;
  command: Command;
}

/** The program and every command under it, parents first. */
function walk(command: Command, path = ''): Node[] {
  return [{ path, command }, ...command.commands.flatMap((sub) => walk(sub, path === '' ? sub.name() : `${path} ${sub.name()}`))];
}

function visibleOptions(command: Command): Option[] {
  return command.options.filter((option) => !option.hidden);
}

function optionNames(option: Option): string[] {
  return [option.short, option.long].filter((name): name is string => name !== undefined);
}

/** Whether the option takes a value (`--config <file>`; an optional `[value]` too). */
function takesValue(option: Option): boolean {
  return option.required || option.optional;
}

/** A value that names a file or directory (`<file>`, `<dir>`, `<path>`): completed from the file system. */
function takesPath(option: Option): boolean {
  return /[<[](file|dir|path)[>\]]/.test(option.flags);
}

export function bashCompletion(program: Command): string {
  const nodes = walk(program);
  const known = nodes.filter((node) => node.path !== '').map((node) => `"${node.path}"`);
  const valueCases = nodes.flatMap(({ path, command }) =>
    visibleOptions(command)
      .filter(takesValue)
      .flatMap((option) =>
        optionNames(option).map((name) => {
          const reply = option.argChoices ? `compgen -W "${option.argChoices.join(' ')}" -- "$cur"` : takesPath(option) ? 'compgen -f -- "$cur"' : '';
          return `    "${path}:${name}") COMPREPLY=(${reply === '' ? '' : `$(${reply})`}); return ;;`;
        }),
      ),
  );
  const wordCases = nodes.map(({ path, command }) => {
    const words = [...command.commands.map((sub) => sub.name()), ...visibleOptions(command).flatMap(optionNames), '--help'];
    return `    "${path}") words="${words.join(' ')}" ;;`;
  });
  return `# bash completion for knock-port; generated from the command tree by npm run docs:generate.
_knock_port() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} path="" next words i
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="$path\${path:+ }\${COMP_WORDS[i]}"
    case "$next" in
      ${known.join('|')}) path=$next ;;
    esac
  done
  case "$path:$prev" in
${valueCases.join('\n')}
  esac
  case "$path" in
${wordCases.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _knock_port knock-port
`;
}

/** Text inside a zsh `[description]` within single quotes: brackets escaped, quotes closed and reopened. */
function zshText(text: string): string {
  return text.replace(/([[\]])/g, '\\$1').replace(/'/g, "'\\''");
}

function zshFunction(path: string): string {
  return `_knock_port${path === '' ? '' : `_${path.replace(/[^a-z0-9]+/gi, '_')}`}`;
}

function zshOptionSpec(option: Option): string {
  const names = optionNames(option);
  const exclusive = names.length > 1 ? `'(${names.join(' ')})'{${names.join(',')}}` : `'${names[0]!}`;
  const open = names.length > 1 ? `'` : '';
  const value = !takesValue(option) ? '' : option.argChoices ? `:value:(${option.argChoices.join(' ')})` : takesPath(option) ? ':file:_files' : ':value: ';
  return `${exclusive}${open}[${zshText(option.description)}]${value}'`;
}

function zshNode({ path, command }: Node): string {
  const options = visibleOptions(command).map(zshOptionSpec);
  if (command.commands.length === 0) {
    const args = command.registeredArguments.length > 0 ? [`'*:file:_files'`] : [];
    return `${zshFunction(path)}() {\n  _arguments -s ${[...options, ...args].join(' \\\n    ')}\n}`;
  }
  const described = command.commands.map((sub) => `'${sub.name()}:${zshText(sub.description())}'`);
  const dispatch = command.commands.map((sub) => `    ${sub.name()}) ${zshFunction(path === '' ? sub.name() : `${path} ${sub.name()}`)} ;;`);
  return `${zshFunction(path)}() {
  local -a commands=(${described.join(' ')})
  local state line
  _arguments -C ${[...options, `'1: :->command'`, `'*:: :->args'`].join(' ')}
  case $state in
    command) _describe command commands ;;
    args)
      case $line[1] in
${dispatch.map((line) => `    ${line}`).join('\n')}
      esac ;;
  esac
}`;
}

export function zshCompletion(program: Command): string {
  return `#compdef knock-port
# zsh completion for knock-port; generated from the command tree by npm run docs:generate.
${walk(program).map(zshNode).join('\n\n')}

${zshFunction('')} "$@"
`;
}
