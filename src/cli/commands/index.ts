/** The `knock-port` subcommands, in the order `--help` lists them; main.ts registers them. */
import type { Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { registerCheck } from './check.js';
import { registerConfirm } from './confirm.js';
import { registerDemo } from './demo.js';
import { registerHashKey } from './hash-key.js';
import { registerHealth } from './health.js';
import { registerInit } from './init.js';
import { registerKnock } from './knock.js';
import { registerReplay } from './replay.js';
import { registerRevoke } from './revoke.js';
import { registerRules } from './rules.js';
import { registerRun } from './run.js';
import { registerSessions } from './sessions.js';
import { registerTotp } from './totp.js';
import { registerUninstall } from './uninstall.js';
import { registerUser } from './user.js';
import { registerWatch } from './watch.js';

/** One file per command; each adds itself (with its own --help) to the program. */
export function registerCommands(program: Command, terminal: Terminal = processTerminal()): void {
  const registers: ((program: Command, terminal: Terminal) => void)[] = [
    registerInit,
    registerUser,
    registerRun,
    registerCheck,
    registerRules,
    registerReplay,
    registerWatch,
    registerSessions,
    registerRevoke,
    registerHealth,
    registerConfirm,
    registerUninstall,
    registerKnock,
    registerDemo,
    registerHashKey,
    registerTotp,
  ];
  for (const register of registers) register(program, terminal);
}
