/**
 * Loaded with `node --import` before `knock-port knock` in the bench: every TCP connection the
 * process opens leaves from KPB_SOURCE_ADDRESS, so each run of the unmodified client knocks from
 * a fresh address of the client namespace (the gateway grants per source address, and a
 * repeated address would find its port already open).
 */
import net from 'node:net';

const from = process.env.KPB_SOURCE_ADDRESS;
if (from) {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function connectFrom(...args) {
    // net.connect() hands over its arguments already normalized, as an array led by the options.
    const holder = Array.isArray(args[0]) ? args[0] : args;
    const options = holder[0];
    if (options && typeof options === 'object' && options.port !== undefined && options.path === undefined && options.localAddress === undefined) {
      holder[0] = { ...options, localAddress: from };
    }
    return connect.apply(this, args);
  };
}
