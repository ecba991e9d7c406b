/**
 * The libnftables thread. A batch of grants costs libnftables about 1.5 ms of parsing per 64
 * elements; on the main thread that would hold up the step-1 capture and the HTTPS listener.
 * Here it runs on a worker thread with a libnftables context of its own (threads share the
 * process's network namespace), and the main thread only posts the script and awaits the reply.
 * Messages are handled one at a time, in the order they were posted. On kernels with table
 * ownership this context's netlink socket owns knock-port's table (see ownTable in nft-runner.ts).
 */
import { parentPort } from 'node:worker_threads';
import { loadNativeAddon, type NativeNftContext } from '../native/addon.js';

/** What LibnftablesRunner asks: nft text to run, or a table for this thread's context to own. */
export type NftThreadTask = { script: string; json?: boolean; check?: boolean } | { own: { family: 'inet'; name: string } };

export type NftThreadRequest = NftThreadTask & { id: number };

/** The reply: libnftables' status, output and error text; for `own`, the kernel's errno as status. */
export interface NftThreadReply {
  id: number;
  status: number;
  output: string;
  error: string;
}

function handle(context: NativeNftContext, request: NftThreadRequest): NftThreadReply {
  if ('own' in request) {
    if (!context.ownTable) return { id: request.id, status: -1, output: '', error: 'the native addon predates table ownership: rebuild it' };
    return { id: request.id, status: context.ownTable(request.own.family, request.own.name), output: '', error: '' };
  }
  const result = context.run(request.script, { json: request.json, dryRun: request.check });
  return { id: request.id, status: result.status, output: result.output, error: result.error };
}

function serve(): void {
  const port = parentPort;
  if (!port) return;
  const context = new (loadNativeAddon().NftContext)();
  port.on('message', (request: NftThreadRequest) => {
    let reply: NftThreadReply;
    try {
      reply = handle(context, request);
    } catch (err) {
      reply = { id: request.id, status: -1, output: '', error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
  });
}

serve();
