/**
 * The control socket's messages as zod schemas, shared by the daemon and the CLI: the daemon
 * checks every request, the CLI every answer, so neither side trusts the other's JSON.
 */
import { z } from 'zod';
import { canonicalIp } from '../shared/ip.js';

/**
 * The control socket speaks newline-delimited JSON: one request object per line, one
 * response object per line, in order.
 */
export const controlRequestSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('sessions') }),
  z.object({
    cmd: z.literal('revoke'),
    ip: z.string().refine((ip) => canonicalIp(ip) !== undefined, 'not an IP address'),
    app: z.string().min(1).optional(),
  }),
  z.object({ cmd: z.literal('health') }),
  z.object({ cmd: z.literal('confirm') }),
  /** The config read again, as on SIGHUP; answered once the reload is applied or refused. */
  z.object({ cmd: z.literal('reload') }),
]);

export type ControlRequest = z.infer<typeof controlRequestSchema>;

export const sessionViewSchema = z.object({
  ip: z.string(),
  app: z.string().nullable(),
  user: z.string().nullable(),
  step: z.enum(['step2', 'service']),
  secondsLeft: z.number(),
  /** The cluster gateway that made the grant; absent when not clustered. */
  gateway: z.string().optional(),
});

export type SessionView = z.infer<typeof sessionViewSchema>;

/** The cluster as one gateway sees it (health, when `global.cluster` is set). */
export const clusterHealthSchema = z.object({
  gateway: z.string(),
  connected: z.boolean(),
  /** The snapshot since the last (re)connect is delivered: live updates flow. */
  synced: z.boolean(),
  /** Publish-to-delivery time of the last live update, ms (includes clock skew). */
  lagMs: z.number().optional(),
  /** This gateway's clock minus the store's, ms (heartbeat); beyond 30 s it is a problem. */
  clockOffsetMs: z.number().optional(),
  /** Entries received and not yet applied here. */
  backlog: z.number(),
  reconnects: z.number(),
  /** Revokes closed here that the store does not have yet (retried until it does). */
  unsharedRevokes: z.number().optional(),
});

export type ClusterHealth = z.infer<typeof clusterHealthSchema>;

/** The certificate step 2 serves (health): which one, and how long it has left. */
export const tlsHealthSchema = z.object({
  subject: z.string(),
  serial: z.string(),
  fingerprint256: z.string(),
  /** ISO 8601. */
  notAfter: z.string(),
  daysLeft: z.number(),
});

/** `run --trial SECONDS` not confirmed yet: the gate is removed when `secondsLeft` reaches 0. */
export const trialHealthSchema = z.object({
  seconds: z.number(),
  secondsLeft: z.number(),
});

export type TrialHealth = z.infer<typeof trialHealthSchema>;

/** Packets report mode let pass that the gate would have dropped, at one app port. */
export const wouldDropSchema = z.object({
  protocol: z.enum(['tcp', 'udp']),
  port: z.number(),
  packets: z.number(),
});

/** The gate in report mode (`gate_mode: report`): what it would have dropped, read from the kernel. */
export const gateHealthSchema = z.object({
  mode: z.literal('report'),
  wouldDrop: z.array(wouldDropSchema),
});

export type GateHealth = z.infer<typeof gateHealthSchema>;

/** The step-1 XDP front (`step1_xdp` other than off): where it runs, or why not, and its counters. */
export const xdpHealthSchema = z.object({
  configured: z.enum(['auto', 'native', 'generic']),
  /** Interfaces the program is attached to, each with its mode. */
  attached: z.array(z.object({ interface: z.string(), mode: z.enum(['native', 'generic']) })),
  /** Why it runs nowhere, or on fewer interfaces than match (one line per interface left out). */
  notes: z.array(z.string()),
  /** Packets since the daemon started, per outcome (native/xdp/step1.h). */
  counters: z.record(z.string(), z.number()),
});

export type XdpHealth = z.infer<typeof xdpHealthSchema>;

export const healthReportSchema = z.object({
  healthy: z.boolean(),
  /** What is degraded or broken, for the operator; empty when healthy. */
  problems: z.array(z.string()),
  /** Worth acting on without being degraded (a certificate close to its expiry). */
  warnings: z.array(z.string()).optional(),
  tls: tlsHealthSchema.optional(),
  cluster: clusterHealthSchema.optional(),
  /** Present in report mode only. */
  gate: gateHealthSchema.optional(),
  /** Present while a trial waits for `knock-port confirm`. */
  trial: trialHealthSchema.optional(),
  /** Present when `step1_xdp` is not off. */
  xdp: xdpHealthSchema.optional(),
});

export type HealthReport = z.infer<typeof healthReportSchema>;

export const controlResponseSchema = z.union([
  z.object({ ok: z.literal(true), sessions: z.array(sessionViewSchema) }),
  /** notShared: clustered, closed here but the store does not have the revoke yet (the gateway retries). */
  z.object({ ok: z.literal(true), revoked: z.number(), notShared: z.literal(true).optional() }),
  z.object({ ok: z.literal(true), health: healthReportSchema }),
  /** The trial is confirmed: the gate stays; it had this long left. */
  z.object({ ok: z.literal(true), confirmed: z.object({ secondsLeft: z.number() }) }),
  /** The reload is applied; `voided`: the grants it revoked (of apps and users the config no longer has). */
  z.object({ ok: z.literal(true), reloaded: z.object({ voided: z.number() }) }),
  z.object({ ok: z.literal(false), error: z.string() }),
]);

export type ControlResponse = z.infer<typeof controlResponseSchema>;

/** Pure: one request line to a request, or the error to send back. */
export function parseControlRequest(line: string): { ok: true; request: ControlRequest } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { ok: false, error: 'request is not JSON' };
  }
  const parsed = controlRequestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    return { ok: false, error: `bad request: ${where}${issue?.message ?? 'invalid'} (commands: sessions, revoke, health, confirm, reload)` };
  }
  return { ok: true, request: parsed.data };
}
