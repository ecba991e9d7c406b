#!/bin/bash
# Builds the Debian packages (npm run package:deb) from this checkout with debhelper: the
# compiled addon, the TypeScript compiled afresh and production node_modules are staged here,
# then dpkg-buildpackage (dh) makes two packages of them:
#   knock-port             runs on the distribution's nodejs (>= engines.node; Debian 13 and newer)
#   knock-port-standalone  carries this machine's Node.js runtime and its license (Debian 12,
#                          Ubuntu 24.04 LTS, VyOS)
# The gateway needs no compiler and runs no npm install scripts.
#
# Needs on the build machine: the build packages of packaging/debian-packages.txt (the addon is
# built with node-gyp if build/Release has none), npm with access to its registry (npm ci),
# debhelper, dpkg-dev and binutils.
#
# Output: dist-deb/knock-port{,-standalone}_<version>_<arch>.deb, or the directory in
# $KNOCK_PORT_DEB_OUT. Prints the standalone .deb's path, then the other's as the last line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/packaging/deb"
OUT=${KNOCK_PORT_DEB_OUT:-$ROOT/dist-deb}
NAME=knock-port
VERSION=$(node -p "require('$ROOT/package.json').version")
ARCH=$(dpkg --print-architecture)
LIB=usr/lib/$NAME
# Who built it, as Debian tools name a maintainer: DEBFULLNAME and DEBEMAIL.
MAINTAINER="${DEBFULLNAME:-knock-port local build} <${DEBEMAIL:-knock-port@localhost}>"

for tool in dpkg-buildpackage dh strip npm; do
  command -v "$tool" >/dev/null || { echo "build.sh: '$tool' is missing (apt-get install debhelper dpkg-dev binutils npm)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/knock-port-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/root"
log() { echo "package:deb: $*" >&2; }

# --- the native addon: built in the checkout when missing or older than its sources ----------
ADDON="$ROOT/build/Release/knockport_native.node"
if [ ! -f "$ADDON" ] || [ -n "$(find "$ROOT/native" "$ROOT/binding.gyp" -newer "$ADDON" -print -quit)" ]; then
  log "building the native addon (node-gyp rebuild)"
  (cd "$ROOT" && npx --no-install node-gyp rebuild >&2)
fi

# --- /usr/lib/knock-port: program, compiled TypeScript, addon, production node_modules -------
install -d "$STAGE/$LIB/bin" "$STAGE/$LIB/build/Release"
log "compiling the TypeScript into the package (the checkout's dist/ is not used)"
(cd "$ROOT" && npx --no-install tsc -p tsconfig.json --outDir "$STAGE/$LIB/dist" --declaration false --sourceMap false)
install -m 755 "$ROOT/bin/knock-port.js" "$STAGE/$LIB/bin/knock-port.js"
install -m 644 "$ADDON" "$STAGE/$LIB/build/Release/knockport_native.node"

# Production dependencies exactly as locked, without running any install script. node-gyp and
# node-addon-api are listed as dependencies but only build the addon: pruned here.
log "installing production node_modules (npm ci --omit=dev --ignore-scripts)"
MODS="$WORK/modules"
install -d "$MODS"
cp "$ROOT/package.json" "$ROOT/package-lock.json" "$MODS/"
(cd "$MODS" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
node -e '
  const fs = require("node:fs"); const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const build of ["node-gyp", "node-addon-api"]) delete p.dependencies[build];
  delete p.scripts; fs.writeFileSync(process.argv[1], JSON.stringify(p, null, 2));' "$MODS/package.json"
(cd "$MODS" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
# cap (libpcap, for `knock-port watch`) is the one dependency with native code: take the build
# of the checkout when it is the same version, else build it here.
CAP_VERSION=$(node -p "require('$MODS/node_modules/cap/package.json').version")
if [ -f "$ROOT/node_modules/cap/build/Release/cap.node" ] && [ "$(node -p "require('$ROOT/node_modules/cap/package.json').version")" = "$CAP_VERSION" ]; then
  install -D -m 644 "$ROOT/node_modules/cap/build/Release/cap.node" "$MODS/node_modules/cap/build/Release/cap.node"
else
  log "building cap $CAP_VERSION against libpcap"
  (cd "$MODS" && npm rebuild cap --no-audit --no-fund >&2)
  find "$MODS/node_modules/cap/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$MODS/node_modules/cap/build/Release" -mindepth 1 ! -name cap.node -exec rm -rf {} +
fi
rm -f "$MODS/node_modules/.package-lock.json"
cp -a "$MODS/node_modules" "$STAGE/$LIB/node_modules"
# What the gateway never uses: docs, tests, type declarations, source maps, build leftovers.
find "$STAGE/$LIB/node_modules" \( -name '*.md' -o -name '*.markdown' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' \
  -o -name '*.map' -o -name '.npmignore' -o -name '.eslintrc*' -o -name '.prettierrc*' -o -name '.editorconfig' -o -name '.travis.yml' \
  -o -name '.github' -o -name 'test' -o -name 'tests' -o -name '*.gyp' -o -name '*.gypi' -o -name '*.cc' -o -name '*.h' -o -name 'obj.target' \) \
  -prune -exec rm -rf {} +
# cap's winpcap (Windows), nan (C++ headers cap builds with), coverage reports, git hooks.
rm -rf "$STAGE/$LIB/node_modules/cap/deps" "$STAGE/$LIB/node_modules/nan"
find "$STAGE/$LIB/node_modules" -type d \( -name coverage -o -name .husky \) -prune -exec rm -rf {} +
find "$STAGE/$LIB/node_modules" \( -name '.git*' -o -name '*.html' \) -exec rm -rf {} +
find "$STAGE/$LIB/node_modules" -depth -type d -empty -delete
# Executable bits only on scripts (#!) and ELF objects: some modules ship plain .js files as 0754.
find "$STAGE/$LIB/node_modules" -type f -perm /111 -exec sh -c '
  for f; do case $(head -c 4 "$f" | od -An -c | tr -d " ") in "#!"*|177ELF) chmod 755 "$f" ;; *) chmod 644 "$f" ;; esac; done' sh {} +
# The package.json node reads: "type": "module" makes bin/ and dist/ ES modules.
node -e '
  const p = require(process.argv[1]);
  const keep = { name: p.name, version: p.version, description: p.description, license: p.license, type: p.type, bin: p.bin, engines: p.engines, dependencies: p.dependencies };
  for (const build of ["node-gyp", "node-addon-api"]) delete keep.dependencies[build];
  process.stdout.write(JSON.stringify(keep, null, 2) + "\n");' "$ROOT/package.json" > "$STAGE/$LIB/package.json"

# Smoke test of the staged program: every dependency loads (nothing pruned that it needs).
(cd "$STAGE/$LIB" && node --input-type=module -e '
  const { dependencies } = JSON.parse((await import("node:fs")).readFileSync("package.json", "utf8"));
  for (const name of Object.keys(dependencies)) await import(name);' && node bin/knock-port.js --version >/dev/null) \
  || { echo "build.sh: the staged program does not load" >&2; exit 1; }

# --- a debhelper source tree: the staged program, the files around it, debian/ ---------------
# Two binary packages from it: knock-port runs on the distribution's nodejs; knock-port-standalone
# carries this machine's Node.js runtime (with its license) for systems whose nodejs is older.
SRC="$WORK/src"
install -d "$SRC/debian/source" "$SRC/extra/system" "$SRC/extra/standalone" "$SRC/node/bin"
mv "$STAGE/$LIB" "$SRC/program"
# Directories 755, files 644 unless executable, whatever the checkout's umask was.
find "$SRC/program" -type d -exec chmod 755 {} +
find "$SRC/program" -type f ! -perm -u+x -exec chmod 644 {} +
wrapper() { # $1: the node binary the wrapper runs
  printf '#!/bin/sh\n# knock-port, installed by the Debian package: the program lives in /%s.\nexec %s /%s/bin/knock-port.js "$@"\n' "$LIB" "$1" "$LIB"
}
wrapper /usr/bin/node > "$SRC/extra/system/knock-port"
wrapper "/$LIB/node/bin/node" > "$SRC/extra/standalone/knock-port"
chmod 755 "$SRC/extra/system/knock-port" "$SRC/extra/standalone/knock-port"
NODE_BIN=$(readlink -f "$(command -v node)")
install -m 755 "$NODE_BIN" "$SRC/node/bin/node"
for license in "$(dirname "$NODE_BIN")/../share/doc/nodejs/LICENSE" /usr/share/doc/nodejs/LICENSE "$(dirname "$NODE_BIN")/../LICENSE"; do
  [ -f "$license" ] && { install -m 644 "$license" "$SRC/node/LICENSE"; break; }
done
[ -f "$SRC/node/LICENSE" ] || { echo "build.sh: the Node.js license file of $NODE_BIN was not found" >&2; exit 1; }
NODE_VERSION=$(node -p 'process.versions.node')
log "standalone variant: Node.js $NODE_VERSION from $NODE_BIN"

# The unit, the user and the state directory in both packages, named knock-port in each
# (debian/<package>.knock-port.*, which the dh_install{systemd,sysusers,tmpfiles} --name=knock-port
# calls of rules read).
for package in knock-port knock-port-standalone; do
  for file in service sysusers tmpfiles; do
    install -m 644 "$ROOT/packaging/systemd/knock-port.$file" "$SRC/debian/$package.knock-port.$file"
  done
done
node "$HERE/example-config.mjs" "$ROOT/config.example.yaml" > "$SRC/extra/config.yaml"
# The man pages and shell completions generated from the code (npm run docs:generate), the README,
# the operator's manual and the examples: debhelper puts them where man, the shells and
# /usr/share/doc/<package>/ expect them.
install -d "$SRC/extra/man" "$SRC/extra/doc/manual" "$SRC/extra/examples" "$SRC/extra/completions"
install -m 644 "$ROOT"/packaging/man/*.[0-9] "$SRC/extra/man/"
install -m 644 "$ROOT/README.md" "$SRC/extra/doc/README.md"
install -m 644 "$ROOT"/docs/manual/*.md "$SRC/extra/doc/manual/"
install -m 644 "$ROOT/config.example.yaml" "$SRC/extra/examples/config.example.yaml"
cp -r "$ROOT/packaging/fail2ban" "$SRC/extra/examples/fail2ban"
install -m 644 "$ROOT/packaging/completions/knock-port.bash" "$SRC/extra/completions/knock-port"
install -m 644 "$ROOT/packaging/completions/_knock-port" "$SRC/extra/completions/_knock-port"
install -m 644 "$ROOT/CHANGELOG.md" "$SRC/extra/CHANGELOG.md"
install -d "$SRC/extra/monitoring"
install -m 644 "$ROOT"/packaging/monitoring/knock-port-* "$SRC/extra/monitoring/"

NODE_MIN=$(node -p "require('$ROOT/package.json').engines.node.replace(/^>=\s*/, '').replace(/\.0$/, '')")
sed -e "s|@MAINTAINER@|$MAINTAINER|" -e "s/@NODE_MIN@/$NODE_MIN/" -e "s/@NODE_VERSION@/$NODE_VERSION/" "$HERE/control.in" > "$SRC/debian/control"
install -m 755 "$HERE/rules" "$SRC/debian/rules"
echo 3.0 '(native)' > "$SRC/debian/source/format"
# Both packages install the same files (they conflict): one set of maintainer scripts and lists.
for package in knock-port knock-port-standalone; do
  for script in postinst prerm postrm; do install -m 755 "$HERE/$script" "$SRC/debian/$package.$script"; done
  install -m 644 "$HERE/lintian-overrides" "$SRC/debian/$package.lintian-overrides"
  sed -i "s/^knock-port:/$package:/" "$SRC/debian/$package.lintian-overrides"
  install -m 644 "$HERE/copyright" "$SRC/debian/$package.copyright"
done
cat "$HERE/copyright-node" >> "$SRC/debian/knock-port-standalone.copyright"
cat >> "$SRC/debian/knock-port-standalone.lintian-overrides" <<'OVERRIDES'

# The Node.js runtime is carried on purpose (systems whose nodejs is older than knock-port needs):
# one program's private runtime under /usr/lib/knock-port, not a library other packages link.
knock-port-standalone: embedded-library *
# The Node.js binary as its builders made it (not position-independent).
knock-port-standalone: hardening-no-pie [usr/lib/knock-port/node/bin/node]
# Scripts under /usr/lib/knock-port name "env node": /usr/bin/knock-port runs them with the carried node.
knock-port-standalone: missing-dep-for-interpreter node (does not satisfy nodejs:any) [usr/lib/knock-port/*]
OVERRIDES
# A Debian changelog: dpkg-buildpackage takes the version from it, lintian and apt-listchanges read it.
{
  printf '%s (%s) unstable; urgency=medium\n\n' "$NAME" "$VERSION"
  printf '  * Built from the upstream sources; see changelog.gz.\n\n'
  printf ' -- %s  %s\n' "$MAINTAINER" "$(date -R -d "@$(stat -c %Y "$ROOT/package.json")")"
} > "$SRC/debian/changelog"

log "building with debhelper (dpkg-buildpackage -b)"
(cd "$SRC" && DEB_BUILD_OPTIONS=noautodbgsym dpkg-buildpackage -b -us -uc -d >&2)
install -d "$OUT"
STANDALONE="$OUT/${NAME}-standalone_${VERSION}_${ARCH}.deb"
DEB="$OUT/${NAME}_${VERSION}_${ARCH}.deb"
cp "$WORK/$(basename "$STANDALONE")" "$STANDALONE"
cp "$WORK/$(basename "$DEB")" "$DEB"
log "Depends: $(dpkg-deb -f "$DEB" Depends)"
# The two paths, the package on the distribution's nodejs last.
echo "$STANDALONE"
echo "$DEB"
