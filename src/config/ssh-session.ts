/**
 * The lockout an operator is most likely to walk into: starting knock-port from an SSH session
 * whose own port it is about to protect. `SSH_CONNECTION` (`client_ip client_port server_ip
 * server_port`, set by sshd) says which session that is. Pure: the environment comes in.
 */
import { networkSet } from '../shared/network-set.js';
import type { Config } from './types.js';

export function sshLockoutWarning(config: Config, sshConnection: string | undefined): string | undefined {
  const [clientIp, , , serverPort] = (sshConnection ?? '').trim().split(/\s+/);
  const port = Number(serverPort);
  if (!clientIp || !Number.isInteger(port)) return undefined;
  const app = config.apps.find((a) => a.protocol === 'tcp' && a.port === port);
  if (!app || networkSet(app.alwaysAllow).has(clientIp)) return undefined;
  return (
    `this SSH session (from ${clientIp} to port ${port}) uses a port app '${app.name}' protects, and ${clientIp} is not always allowed: ` +
    `once knock-port runs, every new connection from ${clientIp} to port ${port} needs a knock (this session itself is kept). ` +
    `Add your management network to global.always_allow (or ${app.name}.always_allow), or make sure you can knock before you log out`
  );
}
