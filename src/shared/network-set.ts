/** Membership in a list of networks as the config holds them (`address/prefix`): trusted proxies, always-allowed sources. */
import { BlockList, isIP } from 'node:net';

export interface NetworkSet {
  has(ip: string): boolean;
}

export function networkSet(networks: readonly string[] = []): NetworkSet {
  const list = new BlockList();
  for (const network of networks) {
    const [address = '', prefix = ''] = network.split('/');
    list.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return {
    has: (ip) => networks.length > 0 && isIP(ip) !== 0 && list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4'),
  };
}
