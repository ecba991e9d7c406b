// `node --import ./test/helpers/module-graph.mjs load-modules.mjs [--tree] URL...`: imports each
// module; with --tree, calls the first one's buildProgram() and renders every command's --help,
// as `knock-port CMD --help` and the man page generator do.
const tree = process.argv[2] === '--tree';
const modules = [];
for (const url of process.argv.slice(tree ? 3 : 2)) modules.push(await import(url));
if (tree) {
  const walk = (command) => {
    command.helpInformation();
    command.commands.forEach(walk);
  };
  walk(modules[0].buildProgram());
}
