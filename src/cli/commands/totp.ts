/**
 * `knock-port totp`: creates a TOTP secret for a user (with its otpauth:// URI and a QR code) and
 * prints the current code for a secret, for scripts and tests.
 */
import type { Command } from 'commander';
import { newTotpSecret, otpauthUri, totpAt } from '../../auth/totp.js';
import { base32Decode } from '../../shared/otp-format.js';
import { KnockUsageError } from '../../client/errors.js';
import { processTerminal, type Terminal } from '../terminal.js';
import { addExamples } from '../help.js';

export function registerTotp(program: Command, terminal: Terminal = processTerminal()): void {
  const totp = program.command('totp').description('create TOTP secrets for users and compute codes');

  const newSecret = totp
    .command('new')
    .description('create a TOTP secret: prints it, its otpauth:// URI and (on a terminal) a QR code to scan')
    .requiredOption('--user <name>', 'account name shown in the authenticator app')
    .option('--issuer <issuer>', 'issuer shown in the authenticator app', 'knock-port');
  addExamples(newSecret, [{ command: 'knock-port totp new --user alice', what: "a secret for alice's authenticator app (scan the QR code)" }]).action(
    async (flags: { user: string; issuer: string }) => {
      const secret = newTotpSecret();
      const uri = otpauthUri(secret, flags.user, flags.issuer);
      terminal.stdout.write(`secret: ${secret}\nuri:    ${uri}\nconfig: totp_secret: ${secret}   (on this user in the app's users: list)\n`);
      if (terminal.stdoutIsTTY) terminal.stdout.write(await (await import('qrcode')).default.toString(uri, { type: 'terminal', small: true }));
    },
  );

  const code = totp
    .command('code')
    .description('print the current code for a secret (for scripts and tests)')
    .requiredOption('--secret <base32>', 'the base32 TOTP secret');
  addExamples(code, [{ command: 'knock-port totp code --secret "$SECRET"', what: 'the code an authenticator app shows now' }]).action(
    (flags: { secret: string }) => {
      if (!base32Decode(flags.secret)) throw new KnockUsageError('--secret is not valid base32 (letters A-Z and digits 2-7)');
      terminal.stdout.write(`${totpAt(flags.secret, Date.now() / 1000)}\n`);
    },
  );
}
