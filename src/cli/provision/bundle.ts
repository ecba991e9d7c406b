/**
 * A user's client bundle, printed once by `user add` (and `init`): the key file for
 * `knock-port knock`, the two requests as curl lines for Linux and macOS and as curl.exe lines
 * for Windows, recipes for the phone apps, and the TOTP secret. The keys are not kept anywhere
 * else in clear: the config holds their digests.
 */
import { otpauthUri } from '../../auth/totp.js';

export interface BundleInput {
  /** The name or address clients reach the gateway at. */
  host: string;
  step1Port: number;
  step2Port: number;
  step1Path: string;
  step2Path: string;
  app: string;
  user: string;
  step1Key: string;
  step2Key: string;
  totpSecret?: string;
  /** The gateway's certificate when it is self-signed (clients trust exactly it), else undefined. */
  selfSignedCertificate?: string;
  /** Seconds the HTTPS port stays open after step 1. */
  step2Window: number;
}

/** `[2001:db8::1]` for an IPv6 address, the name or IPv4 address as is. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export function stepUrls(input: BundleInput): { step1: string; step2: string } {
  const host = urlHost(input.host);
  const port = (value: number, standard: number) => (value === standard ? '' : `:${value}`);
  return {
    step1: `http://${host}${port(input.step1Port, 80)}${input.step1Path}`,
    step2: `https://${host}${port(input.step2Port, 443)}${input.step2Path}`,
  };
}

/** The key file `knock-port knock --key-file` reads. */
export function keyFile(input: BundleInput): string {
  return `http_key=${input.step1Key}\nhttps_key=${input.step2Key}\n${input.totpSecret ? 'totp=yes\n' : ''}`;
}

/** The two requests as curl command lines; `windows`: curl.exe in cmd or PowerShell. */
export function curlLines(input: BundleInput, windows: boolean): string[] {
  const { step1, step2 } = stepUrls(input);
  const curl = windows ? 'curl.exe' : 'curl';
  const quote = (text: string) => (windows ? `"${text}"` : `'${text}'`);
  const globOff = input.host.includes(':') ? ' -g' : '';
  const trust = input.selfSignedCertificate ? ' --cacert gateway.pem' : '';
  const [body1, body2] = requestBodies(input);
  return [`${curl}${globOff} -m 3 -d ${quote(body1)} ${step1}`, `${curl}${globOff}${trust} -d ${quote(body2)} ${step2}`];
}

/** The whole bundle as text; `qr` is the TOTP URI drawn for a terminal, when there is a TOTP. */
export function bundleText(input: BundleInput, qr?: string): string {
  const { step1, step2 } = stepUrls(input);
  const code = input.totpSecret ? ' (CODE: the 6 digits the authenticator app shows)' : '';
  const sections = [
    `Client bundle for ${input.user} (app ${input.app}). It is shown once: the config keeps only digests of the keys.`,
    '',
    `Key file for knock-port knock (save as ${input.user}.keys, chmod 600):`,
    indent(keyFile(input).trimEnd()),
    '',
    `  knock-port knock --url ${step1} --url ${step2} --app ${input.app} --key-file ${input.user}.keys${input.selfSignedCertificate ? ' --ca gateway.pem' : ''}`,
    '',
    `Linux, macOS (step 1 gets no answer: curl exits 28 after 3 s; step 2 within ${input.step2Window} s prints OK)${code}:`,
    indent(curlLines(input, false).join('\n')),
    '',
    'Windows (cmd or PowerShell):',
    indent(curlLines(input, true).join('\n')),
    '',
    ...phoneRecipes(input),
  ];
  if (input.selfSignedCertificate) {
    sections.push('', 'The gateway certificate is self-signed: save this as gateway.pem on the client.', input.selfSignedCertificate.trimEnd());
  }
  if (input.totpSecret) {
    sections.push(
      '',
      `TOTP: scan the code in an authenticator app, or enter the secret ${input.totpSecret}`,
      `  ${otpauthUri(input.totpSecret, input.user)}`,
      ...(qr !== undefined ? [qr.trimEnd()] : []),
    );
  }
  return `${sections.join('\n')}\n`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

/** The Content-Type both requests carry: step 1 is refused without it. */
export const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

/**
 * iOS Shortcuts and Android's HTTP Shortcuts, one shortcut per request, each with the request
 * exactly (method, URL, Content-Type, the body as text), so that neither app's own form
 * encoding (multipart on some) decides what is sent. CODE is what each app asks for each time.
 */
function phoneRecipes(input: BundleInput): string[] {
  const { step1, step2 } = stepUrls(input);
  const [body1, body2] = requestBodies(input);
  const header = `Content-Type = ${FORM_CONTENT_TYPE}`;
  const ios = (body: string) => body.replace('CODE', '[Provided Input]');
  const android = (body: string) => body.replace('CODE', '{token}');
  const run = `Run "knock 1" (no answer: it fails after its timeout, as it should), then "knock 2" within ${input.step2Window} s: it shows OK.`;
  return [
    'iOS Shortcuts (Shortcuts > + > Add Action), a shortcut per request:',
    `  "knock 1": Text: ${ios(body1)}`,
    `             Get Contents of URL: ${step1}; Method: POST; Headers: ${header}; Request Body: File = Text`,
    `  "knock 2": ${input.totpSecret ? 'Ask for Input (Number), then ' : ''}Text: ${ios(body2)}`,
    `             Get Contents of URL: ${step2}; Method: POST; Headers: ${header}; Request Body: File = Text`,
    `  ${run}${input.selfSignedCertificate ? ' Install gateway.pem first: as a profile, then Settings > General > About > Certificate Trust Settings.' : ''}`,
    'Android, HTTP Shortcuts app (+ > Regular Shortcut), a shortcut per request:',
    `  "knock 1": Method: POST; URL: ${step1}; Request Body: Custom Text; Content Type: ${FORM_CONTENT_TYPE}; Body: ${android(body1)}; Advanced: Timeout 2 s`,
    `  "knock 2": Method: POST; URL: ${step2}; Request Body: Custom Text; Content Type: ${FORM_CONTENT_TYPE}; Body: ${android(body2)}${input.totpSecret ? '; {token}: a variable of type Text input' : ''}`,
    `  + > Multi-Shortcut "knock": "knock 1" then "knock 2" within ${input.step2Window} s ("knock 1": Response Handling > Failure output: none); run "knock": it shows OK.${input.selfSignedCertificate ? ' Install gateway.pem first: Settings > Security > Encryption & credentials > Install a certificate > CA certificate.' : ''}`,
  ];
}

/** The two request bodies; step 2's ends in `token=CODE` for a TOTP user (CODE: the 6 digits the authenticator shows). */
export function requestBodies(input: BundleInput): [string, string] {
  return [`app=${input.app}&access_key=${input.step1Key}`, `app=${input.app}&access_key=${input.step2Key}${input.totpSecret ? '&token=CODE' : ''}`];
}
