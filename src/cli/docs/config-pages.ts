/**
 * The config reference rendered from the schema (config/schema-doc.ts): the man page
 * knock-port.yaml(5), and the markdown tables between the generated-table markers of the
 * operator manual's pages.
 */
import { configReference, type KeyReference, type SectionReference } from '../../config/schema-doc.js';
import { bold, escapeRoff, italic, manPage, markdownToRoff, safeLine } from './roff.js';

/** The man page knock-port.yaml(5): every section and key of the config file. */
export function configManPage(): string {
  const sections = configReference();
  return manPage({ name: 'knock-port.yaml', section: 5, manual: 'File Formats' }, [
    ['.SH NAME', 'knock-port.yaml \\- configuration file of the knock-port daemon'],
    ['.SH SYNOPSIS', italic('/etc/knock-port/config.yaml'), '.br', italic('/etc/knock-port/conf.d/*.yaml'), '.br', italic('/etc/knock-port/users.d/*.yaml')],
    [
      '.SH DESCRIPTION',
      'One YAML file with a',
      bold('global'),
      "section and one section per protected app; each app section's name is the",
      bold('app'),
      'value clients send. Files in',
      italic('conf.d/'),
      'and',
      italic('users.d/'),
      'next to it are read after it, in name order, and add sections, apps or users.',
      '.PP',
      `${bold('knock-port check -c')} ${italic('FILE')} validates a file: it prints a summary without secrets, or every problem as`,
      italic('FILE:LINE:COL: key.path: what was expected'),
      'and exits 1. Published example paths, keys and TOTP secrets are refused. Any key may be written as',
      `${bold('sha256:')}${italic('<64 hex digits>')},`,
      'the SHA-256 digest of the key',
      `(${bold('knock-port hash-key')}).`,
    ],
    ...sections.map(sectionRoff),
    ['.SH EXAMPLE', '.nf', ...MINIMAL_EXAMPLE.split('\n').map((line) => safeLine(escapeRoff(line))), '.fi'],
    ['.SH SEE ALSO', '.BR knock-port (8),', '.BR knock-port-knock (1),', italic('/usr/share/doc/knock-port/manual/')],
  ]);
}

/** A config that passes `check` once its placeholders are real, shown at the end of the man page. */
const MINIMAL_EXAMPLE = `global:
  http_post_path: /STEP1-PATH        # openssl rand -hex 16
  https_post_path: /STEP2-PATH
  interface_ext: eth0
  tls_cert: /etc/knock-port/tls/cert.pem
  tls_key: /etc/knock-port/tls/key.pem
ssh:
  port: 22
  duration: 3600
  step2_https_duration: 5
  users:
    - name: alice
      access_key_http: sha256:...    # knock-port user add alice --app ssh
      access_key_https: sha256:...`;

function sectionRoff(section: SectionReference): string[] {
  return [`.SH ${section.path.toUpperCase().replace(/"/g, '')}`, markdownToRoff(section.summary), ...section.keys.flatMap(keyRoff)];
}

function keyRoff(key: KeyReference): string[] {
  const lines = ['.TP', `${bold(key.key)} (${escapeRoff(key.type)}; ${markdownToRoff(defaultWords(key))})`, markdownToRoff(key.description)];
  if (key.example !== undefined) lines.push('.br', `Example: ${bold(`${key.key}: ${key.example}`)}`);
  return lines;
}

function defaultWords(key: KeyReference): string {
  if (key.default === 'required') return 'required';
  if (key.default === 'none') return 'optional';
  return `default: ${key.default}`;
}

/** `<!-- generated: config global -->` ... `<!-- end generated -->`: the table of these sections. */
const BLOCK = /(<!-- generated: config ([a-zA-Z.[\] ,]+) -->\n)[\s\S]*?(<!-- end generated -->)/g;

/** A markdown page with every generated table in it made again from the schema. */
export function withConfigTables(markdown: string): string {
  const sections = configReference();
  return markdown.replace(BLOCK, (_block, start: string, names: string, end: string) => {
    const wanted = names.split(',').map((name) => name.trim());
    const chosen = wanted.map((name) => {
      const found = sections.find((section) => section.path === name);
      if (!found) throw new Error(`generated table names an unknown config section '${name}'`);
      return found;
    });
    return `${start}${markdownTable(chosen, wanted[0]!)}${end}`;
  });
}

/** One table of the keys of `sections`, each named relative to `base`. */
function markdownTable(sections: readonly SectionReference[], base: string): string {
  const rows = sections.flatMap((section) => {
    const prefix = section.path === base ? '' : `${section.path.slice(base.length + 1)}.`;
    return section.keys.map((key) => {
      const example = key.example === undefined ? '' : ` Example: \`${key.key}: ${key.example}\`.`;
      const cells = [`\`${prefix}${key.key}\``, key.type, key.default, `${key.description}${example}`];
      return `| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`;
    });
  });
  return ['| Key | Type | Default | Meaning |', '|---|---|---|---|', ...rows, ''].join('\n');
}
