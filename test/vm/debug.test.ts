import { it } from 'vitest';
import { ADDR, createSandbox, startDaemon, writeFile, curl } from '../helpers/sandbox.js';
import { vyosCommit } from '../helpers/vyos-layout.js';
import { IF } from '../helpers/sandbox.js';
import { join } from 'node:path';

for (const capture of (process.env.DBG_CAPTURES ?? 'nflog,nfqueue').split(',')) {
  it(`vyos ${capture}`, async () => {
    const sb = createSandbox('dbg');
    try {
      vyosCommit(sb.gw);
      const cfg = writeFile(sb, 'c.yaml', `global:
  http_post_path: /knock-dbg-123456
  https_post_path: /step2-dbg-123456
  interface_ext: ${IF.gwWan}
  interface_int: ${IF.gwLan}
  firewall_type: vyos
  capture: ${capture}
  state_dir: ${join(sb.dir, 'state')}
  control_socket: ${join(sb.dir, 'control.sock')}
svc:
  port: 8080
  access_key_http: [dbg-http-key-0123456789]
  access_key_https: [dbg-https-key-0123456789]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 30
`);
      const d = startDaemon(sb, ['-c', cfg, '--cert', sb.cert, '--key', sb.key, '--log-level', 'debug']);
      console.log('ready', await d.waitForLog(/knock-port ready/, 150000));
      for (const addr of [ADDR.gwWan4, `[${ADDR.gwWan6}]`]) {
        console.log(addr, curl(sb.client, ['-v', '-d', 'app=svc&access_key=dbg-http-key-0123456789', `http://${addr}/knock-dbg-123456`], 10));
      }
      console.log(sb.gw.tryExec('ip', ['-6', 'neigh']).out, '---client---', sb.client.tryExec('ip', ['-6', 'neigh']).out);
      console.log(sb.gw.tryExec('nft', ['list', 'ruleset']).out);
      console.log(d.output.filter((l) => !l.includes('"level":20')).slice(-30).join('\n'));
      console.log(d.output.filter((l) => l.includes('step-1')).slice(-30).join('\n'));
      await d.stop('SIGKILL');
    } finally {
      sb.destroy();
    }
  });
}
