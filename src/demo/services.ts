/**
 * The services the demo protects: a small web server run inside a namespace, on the gateway
 * and on the LAN host, so that each open or closed port is visible with curl.
 */
import type { Netns } from './netns.js';

/**
 * Starts a tiny web server inside `ns` (dual-stack, on `port`) answering every request with
 * `text`. Socket errors are swallowed: a client reset must not kill the service mid-demo.
 */
export function startWebServer(ns: Netns, port: number, text: string): void {
  const script = `
    const http = require('node:http');
    const server = http.createServer((req, res) => res.end(${JSON.stringify(`${text}\n`)}));
    server.on('clientError', (err, socket) => socket.destroy());
    server.on('connection', (socket) => socket.on('error', () => {}));
    server.listen({ port: ${port}, host: '::', ipv6Only: false });`;
  ns.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}
