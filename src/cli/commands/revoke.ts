/** `knock-port revoke`: closes an IP's grants now, all or one app's, via the control socket. */
import { InvalidArgumentError, type Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, type ControlSocketOptions } from '../options.js';
import { ControlCommandError } from '../../control/errors.js';
import { canonicalIp } from '../../shared/ip.js';
import { addExamples } from '../help.js';

function parseIp(value: string): string {
  const ip = canonicalIp(value);
  if (ip === undefined) throw new InvalidArgumentError('expected an IPv4 or IPv6 address');
  return ip;
}

export function registerRevoke(program: Command, terminal: Terminal = processTerminal()): void {
  const revoke = addControlSocketOptions(
    program
      .command('revoke')
      .description("close an IP's grants now: all of them, or one app's (via the control socket)")
      .argument('<ip>', 'client address', parseIp)
      .option('--app <name>', "only this app's service grant"),
  );
  addExamples(revoke, [
    { command: 'knock-port revoke 203.0.113.7', what: 'close every grant of 203.0.113.7 now' },
    { command: 'knock-port revoke 2001:db8::7 --app ssh', what: 'close only its ssh grant' },
  ]).action(async (ip: string, options: ControlSocketOptions & { app?: string }) => {
    const request = options.app === undefined ? { cmd: 'revoke' as const, ip } : { cmd: 'revoke' as const, ip, app: options.app };
    const { sendControlRequest } = await import('../../control/client.js');
    const { resolveControlSocket } = await import('../resolve-options.js');
    const response = await sendControlRequest(resolveControlSocket(options), request);
    if (!response.ok) throw new ControlCommandError(response.error);
    if (!('revoked' in response)) throw new ControlCommandError('unexpected answer to revoke');
    const scope = options.app === undefined ? '' : ` (app ${options.app})`;
    terminal.stdout.write(`revoked ${ip}${scope}: ${response.revoked} grant(s) closed\n`);
    if (response.notShared === true)
      terminal.stderr.write(
        'warning: closed here, not yet shared: the cluster store is unreachable; the other gateways keep these grants open until it takes the revoke (retried; see `knock-port health`)\n',
      );
  });
}
