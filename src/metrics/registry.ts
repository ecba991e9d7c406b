/**
 * The daemon's Prometheus registry: prom-client's, one per daemon (never the global one, so
 * tests and several daemons in one process never collide), with the default process and
 * Node.js metrics (`process_*`, `nodejs_*`) and hooks that run before every scrape.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export class MetricsRegistry extends Registry {
  private readonly scrapeHooks: Array<() => void> = [];

  /**
   * Adds prom-client's default process and Node.js metrics under their usual names: CPU,
   * memory, file descriptors, event-loop lag, GC, heap spaces, handles. Once per registry,
   * and only on the main thread: the step-1 workers never touch the registry.
   */
  addDefaultMetrics(): void {
    collectDefaultMetrics({ register: this });
  }

  /** Runs `hook` before every scrape, to copy counts kept elsewhere (off the hot path). */
  beforeScrape(hook: () => void): void {
    this.scrapeHooks.push(hook);
  }

  /** The whole registry in the Prometheus text format (version 0.0.4, `contentType`). */
  override async metrics(): Promise<string> {
    for (const hook of this.scrapeHooks) hook();
    return super.metrics();
  }
}
