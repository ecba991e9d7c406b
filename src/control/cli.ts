import type { Command } from 'commander';
import { loadConfigFile } from '../config/load.js';

/** Where the daemon listens when neither --socket nor -c says otherwise. */
export const DEFAULT_CONTROL_SOCKET = '/run/knock-port/control.sock';

export interface ControlSocketOptions {
  socket?: string;
  config?: string;
}

/** `--socket PATH` and `-c FILE` (its `control_socket`), shared by sessions, revoke and health. */
export function addControlSocketOptions(command: Command): Command {
  return command
    .option('--socket <path>', `control socket of the running daemon (default: control_socket from -c, else ${DEFAULT_CONTROL_SOCKET})`)
    .option('-c, --config <file>', 'config file whose control_socket to use');
}

export function resolveControlSocket(options: ControlSocketOptions): string {
  if (options.socket !== undefined) return options.socket;
  if (options.config !== undefined) return loadConfigFile(options.config).global.controlSocket;
  return DEFAULT_CONTROL_SOCKET;
}
