#!/usr/bin/env node
// npm's install step: builds the native addon the gateway commands need, on Linux only. A
// client needs none of it: `knock-port knock` runs on any OS, so a failed or skipped build
// leaves the package installed and says what the gateway commands will need.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

if (process.platform !== 'linux') {
  console.error(`knock-port: no native addon on ${process.platform}: knock-port knock works; the gateway commands need Linux`);
  process.exit(0);
}
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const build = spawnSync(process.execPath, [nodeGyp, 'rebuild'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.error(
    'knock-port: the native addon did not build: knock-port knock works; for the gateway commands install ' +
      'libnetfilter-queue-dev libnetfilter-log-dev libnftables-dev libmnl-dev and a C++ compiler, then run `npx node-gyp rebuild` here',
  );
  // In CI the addon is what is being tested: a build that fails fails the install.
  if (process.env.CI || process.env.KNOCKPORT_CI) process.exit(build.status ?? 1);
}
