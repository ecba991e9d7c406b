/** The step-2 listener's reload moves: prepared next to the running one, applied or cancelled. */
import { createServer as createHttpsServer, type Server } from 'node:https';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GlobalConfig } from '../../../src/config/types.js';
import { Step2ListenError, Step2Listener } from '../../../src/step2/listener.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { fixtureConfig } from '../step1/fixture-config.js';
import { throwawayCertificate } from './fixtures.js';
import { freePort } from '../../helpers/ports.js';

describe('Step2Listener', () => {
  let tls: { cert: Buffer; key: Buffer };
  const servers: Server[] = [];
  const base = fixtureConfig().global;
  const at = (step2Port: number, step2ListenAddress?: string): GlobalConfig => ({ ...base, step2Port, step2ListenAddress, ipv6: false });

  beforeAll(async () => {
    tls = await throwawayCertificate();
  });
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  function newListener() {
    const create = () => {
      const server = createHttpsServer(tls);
      servers.push(server);
      return server;
    };
    return { listener: new Step2Listener(create(), create, capturedLogger('info').logger), servers };
  }

  it('listens next to the running listener on a new port; cancel keeps the running one, apply closes it', async () => {
    const { listener, servers } = newListener();
    const before = at(await freePort(), '127.0.0.1');
    await listener.listen(before);
    const cancelled = await listener.prepareMove(at(await freePort(), '127.0.0.1'), before);
    expect(servers.map((s) => s.listening)).toEqual([true, true]);
    await cancelled.cancel();
    expect(servers.map((s) => s.listening)).toEqual([true, false]);
    const moved = await listener.prepareMove(at(await freePort(), '127.0.0.1'), before);
    await moved.apply();
    expect(servers.map((s) => s.listening)).toEqual([false, false, true]);
    expect(listener.listening).toBe(true);
  });

  it('closes the running listener first when only the address changes on the same port, and listens again on cancel', async () => {
    const { listener, servers } = newListener();
    const port = await freePort();
    const before = at(port);
    await listener.listen(before);
    const move = await listener.prepareMove(at(port, '127.0.0.1'), before);
    expect(servers.map((s) => s.listening)).toEqual([false, true]);
    await move.cancel();
    expect(servers.map((s) => s.listening)).toEqual([true, false]);
  });

  it('says which address it cannot listen on', async () => {
    const { listener } = newListener();
    const port = await freePort();
    const holder = createHttpsServer(tls);
    servers.push(holder);
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    await expect(listener.listen(at(port, '127.0.0.1'))).rejects.toThrow(
      new Step2ListenError(`cannot listen for HTTPS on 127.0.0.1 port ${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`),
    );
  });
});
