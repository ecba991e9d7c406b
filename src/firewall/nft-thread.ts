/**
 * The libnftables thread. A batch of grants costs libnftables about 1.5 ms of parsing per 64
 * elements; on the main thread that would hold up the step-1 capture and the HTTPS listener.
 * Here it runs on a worker thread with a libnftables context of its own (threads share the
 * process's network namespace), and the main thread only posts the script and awaits the reply.
 * Messages are handled one at a time, in the order they were posted.
 */
import { parentPort } from 'node:worker_threads';
import { loadNativeAddon } from '../native/addon.js';

/** A request from LibnftablesRunner.runAsync. */
export interface NftThreadRequest {
  id: number;
  script: string;
  json?: boolean;
  check?: boolean;
}

/** The reply: libnftables' status, output and error text. */
export interface NftThreadReply {
  id: number;
  status: number;
  output: string;
  error: string;
}

function serve(): void {
  const port = parentPort;
  if (!port) return;
  const context = new (loadNativeAddon().NftContext)();
  port.on('message', (request: NftThreadRequest) => {
    let reply: NftThreadReply;
    try {
      const result = context.run(request.script, { json: request.json, dryRun: request.check });
      reply = { id: request.id, status: result.status, output: result.output, error: result.error };
    } catch (err) {
      reply = { id: request.id, status: -1, output: '', error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
  });
}

serve();
