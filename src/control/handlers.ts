/**
 * The daemon's answers to control commands, built on its session store, its granter and its
 * health check; server.ts only speaks the protocol.
 */
import type { AppConfig, Config } from '../config/types.js';
import { secondsLeft, type SessionRecord } from '../sessions/record.js';
import type { SessionStore } from '../sessions/store.js';
import { ReloadRefusedError, UnknownAppError } from './errors.js';
import type { HealthReport, SessionView } from './protocol.js';
import type { ControlHandlers } from './server.js';
import type { Trial } from './trial.js';

export function sessionView(record: SessionRecord, now: number): SessionView {
  return {
    ip: record.ip,
    app: record.app,
    user: record.user,
    step: record.step,
    secondsLeft: secondsLeft(record, now),
    ...(record.gateway !== undefined ? { gateway: record.gateway } : {}),
  };
}

export interface DaemonControlParts {
  sessions: Pick<SessionStore, 'list'>;
  /** The Granter, or clustered, the sync's revoke (which also says whether the store has it). */
  granter: { revoke: (ip: string, app?: AppConfig) => Promise<number | { closed: number; shared: boolean }> };
  config: () => Config;
  health: () => HealthReport | Promise<HealthReport>;
  /** The config read again (as on SIGHUP): the grants it voided, or undefined when the running config was kept. */
  reload: () => Promise<{ voided: number } | undefined>;
  /** The daemon's `run --trial`, when it was started with one. */
  trial?: Pick<Trial, 'confirm'>;
  now?: () => number;
}

export const RELOAD_REFUSED =
  'the config reload failed: the daemon still runs on the previous config; the log says why (knock-port check -c FILE shows config errors), fix it and reload';

/** The handlers a running daemon answers with: its session store, its granter, its health. */
export function createControlHandlers(parts: DaemonControlParts): ControlHandlers {
  const now = parts.now ?? Date.now;
  return {
    sessions: () => parts.sessions.list().map((record) => sessionView(record, now())),
    revoke: async (ip, appName) => {
      if (appName === undefined) return parts.granter.revoke(ip);
      const app = parts.config().apps.find((candidate) => candidate.name === appName);
      if (!app) throw new UnknownAppError(`no app named '${appName}' in ${parts.config().source}`);
      return parts.granter.revoke(ip, app);
    },
    health: parts.health,
    reload: async () => {
      const applied = await parts.reload();
      if (!applied) throw new ReloadRefusedError(RELOAD_REFUSED);
      return applied;
    },
    ...(parts.trial ? { confirm: () => ({ secondsLeft: parts.trial!.confirm() }) } : {}),
  };
}
