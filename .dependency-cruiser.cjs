/**
 * The layers of src/, bottom to top. A module may import from its own directory and from lower
 * layers only; directories in the same layer do not import each other (capture/ and firewall/ in
 * particular). `npm run lint` runs this check.
 */
const LAYERS = [
  ['shared'],
  ['packet', 'native'],
  ['config'],
  ['auth'],
  ['step1'], // the pure step-1 core; its worker threads (step1-workers) sit higher up
  ['capture', 'firewall', 'metrics', 'systemd'],
  ['sessions', 'step1-workers'],
  ['step2', 'cluster'], // cluster/sync.ts applies other gateways' grants through the sessions' Granter
  ['control', 'client', 'demo'],
  ['daemon'], // the parts daemon.ts builds: running config, self-heal, reload, lasting state
  ['daemon.ts'], // wiring: builds the parts in order
  ['cli'],
];

/** `src/<name>` as a path pattern: a directory or a top-level file. */
function pathOf(name) {
  if (name.endsWith('.ts')) return `^src/${name.replace('.', '\\.')}$`;
  return `^src/${name}/`;
}

const rules = [];
LAYERS.forEach((layer, rank) => {
  const above = LAYERS.slice(rank + 1).flat();
  for (const name of layer) {
    const siblings = layer.filter((other) => other !== name);
    const forbidden = [...siblings, ...above].map(pathOf);
    if (forbidden.length === 0) continue;
    rules.push({
      name: `layer-${name.replace(/[/.]/g, '-')}`,
      comment: `${name} imports only from itself and lower layers (see .dependency-cruiser.cjs)`,
      severity: 'error',
      from: { path: pathOf(name) },
      to: { path: forbidden },
    });
  }
});

module.exports = {
  forbidden: [
    ...rules,
    {
      name: 'firewall-backends-apart',
      comment: "one firewall's folder (src/firewall/nftables/, iptables/) never imports another's",
      severity: 'error',
      from: { path: '^src/firewall/([^/]+)/' },
      to: { path: '^src/firewall/[^/]+/', pathNot: '^src/firewall/$1/' },
    },
    {
      name: 'firewall-shared-code-backend-free',
      comment: "the firewall's shared modules work for every backend: only index.ts picks one",
      severity: 'error',
      from: { path: '^src/firewall/[^/]+[.]ts$', pathNot: '^src/firewall/index[.]ts$' },
      to: { path: '^src/firewall/[^/]+/' },
    },
    {
      name: 'no-circular',
      comment: 'modules that import each other cannot be read, tested or loaded one at a time',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-tests',
      comment: 'the program never loads test or benchmark code',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
  },
};
