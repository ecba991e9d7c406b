#!/bin/bash
# Builds knock-port_<version>_<arch>.deb (npm run package:deb) from this checkout, with plain
# dpkg-deb from a staging tree: the compiled addon, the TypeScript compiled afresh, production
# node_modules and the systemd/sysusers/tmpfiles files. The gateway needs no compiler and runs
# no npm install scripts.
#
# Needs on the build machine: the build packages of packaging/debian-packages.txt (the addon is
# built with node-gyp if build/Release has none), npm with access to its registry (npm ci),
# dpkg-dev (dpkg-shlibdeps) and binutils (strip).
#
# Output: dist-deb/knock-port_<version>_<arch>.deb, or the directory in $KNOCK_PORT_DEB_OUT.
# Prints the .deb's path as its last line.
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

for tool in dpkg-deb dpkg-shlibdeps strip npm gzip; do
  command -v "$tool" >/dev/null || { echo "build.sh: '$tool' is missing (apt-get install dpkg-dev binutils npm)" >&2; exit 1; }
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
  const keep = { name: p.name, version: p.version, description: p.description, license: p.license, type: p.type, bin: p.bin, engines: p.engines, dependencies: p.dependencies, optionalDependencies: p.optionalDependencies };
  for (const build of ["node-gyp", "node-addon-api"]) delete keep.dependencies[build];
  process.stdout.write(JSON.stringify(keep, null, 2) + "\n");' "$ROOT/package.json" > "$STAGE/$LIB/package.json"

# Smoke test of the staged program: every dependency loads (nothing pruned that it needs).
(cd "$STAGE/$LIB" && node --input-type=module -e '
  const { dependencies } = JSON.parse((await import("node:fs")).readFileSync("package.json", "utf8"));
  for (const name of Object.keys(dependencies)) await import(name);' && node bin/knock-port.js --version >/dev/null) \
  || { echo "build.sh: the staged program does not load" >&2; exit 1; }

# --- /usr/bin, systemd, sysusers, tmpfiles --------------------------------------------------
install -d "$STAGE/usr/bin"
printf '#!/bin/sh\n# knock-port, installed by the Debian package: the program lives in /%s.\nexec /usr/bin/node /%s/bin/knock-port.js "$@"\n' "$LIB" "$LIB" > "$STAGE/usr/bin/$NAME"
chmod 755 "$STAGE/usr/bin/$NAME"
install -D -m 644 "$ROOT/packaging/systemd/knock-port.service" "$STAGE/usr/lib/systemd/system/knock-port.service"
install -D -m 644 "$ROOT/packaging/systemd/knock-port.sysusers" "$STAGE/usr/lib/sysusers.d/knock-port.conf"
install -D -m 644 "$ROOT/packaging/systemd/knock-port.tmpfiles" "$STAGE/usr/lib/tmpfiles.d/knock-port.conf"

# --- /etc/knock-port/config.yaml: the example with every secret replaced by a placeholder -----
install -d -m 755 "$STAGE/etc/$NAME"
node "$HERE/example-config.mjs" "$ROOT/config.example.yaml" > "$STAGE/etc/$NAME/config.yaml"
chmod 640 "$STAGE/etc/$NAME/config.yaml"

# --- documentation --------------------------------------------------------------------------
DOC="$STAGE/usr/share/doc/$NAME"
install -d "$DOC" "$DOC/manual" "$DOC/examples" "$STAGE/usr/share/lintian/overrides"
install -m 644 "$HERE/copyright" "$DOC/copyright"
gzip -9n < "$ROOT/CHANGELOG.md" > "$DOC/changelog.gz"
# A Debian changelog: lintian and apt-listchanges read it.
{
  printf '%s (%s) unstable; urgency=medium\n\n' "$NAME" "$VERSION"
  printf '  * Built from the upstream sources; see changelog.gz.\n\n'
  printf ' -- %s  %s\n' "$MAINTAINER" "$(date -R -d "@$(stat -c %Y "$ROOT/package.json")")"
} | gzip -9n > "$DOC/changelog.Debian.gz"
# The man pages, generated from the code (npm run docs:generate): each into man<section>.
for page in "$ROOT"/packaging/man/*.[0-9]; do
  section=${page##*.}
  install -d "$STAGE/usr/share/man/man$section"
  gzip -9n < "$page" > "$STAGE/usr/share/man/man$section/$(basename "$page").gz"
done
# The README and the operator's manual, as the man pages' SEE ALSO names them; the examples.
# Files over 4 KB are compressed, as Debian policy asks (12.3).
install -m 644 "$ROOT/README.md" "$DOC/README.md"
install -m 644 "$ROOT"/docs/manual/*.md "$DOC/manual/"
install -m 644 "$ROOT/config.example.yaml" "$DOC/examples/config.example.yaml"
cp -r "$ROOT/packaging/fail2ban" "$DOC/examples/fail2ban"
find "$DOC" \( -name '*.md' -o -name '*.yaml' \) -size +4k -exec gzip -9n {} +
# Bash and zsh completions, generated from the command tree.
install -D -m 644 "$ROOT/packaging/completions/knock-port.bash" "$STAGE/usr/share/bash-completion/completions/knock-port"
install -D -m 644 "$ROOT/packaging/completions/_knock-port" "$STAGE/usr/share/zsh/vendor-completions/_knock-port"
install -m 644 "$HERE/lintian-overrides" "$STAGE/usr/share/lintian/overrides/$NAME"

# --- shared objects: stripped, and their libraries in Depends --------------------------------
mapfile -t OBJECTS < <(find "$STAGE" -name '*.node' -type f)
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${OBJECTS[@]}"
chmod 644 "${OBJECTS[@]}"
install -d "$WORK/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" > "$WORK/shlibs/debian/control"
SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "${OBJECTS[@]/#/-e}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || { echo "build.sh: dpkg-shlibdeps found no libraries" >&2; exit 1; }
NODE_MIN=$(node -p "require('$ROOT/package.json').engines.node.replace(/^>=\s*/, '').replace(/\.0$/, '')")
DEPENDS="$SHLIBS, nodejs (>= $NODE_MIN), nftables, iptables, ipset, systemd | adduser"

# --- DEBIAN/ --------------------------------------------------------------------------------
install -d -m 755 "$STAGE/DEBIAN"
for script in postinst prerm postrm; do install -m 755 "$HERE/$script" "$STAGE/DEBIAN/$script"; done
echo "/etc/$NAME/config.yaml" > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPENDS/" -e "s/@SIZE@/$SIZE/" -e "s|@MAINTAINER@|$MAINTAINER|" "$HERE/control.in" > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
chmod 644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

# Directories 755, files 644 unless executable: whatever the checkout's umask was.
find "$STAGE" -type d -exec chmod 755 {} +
find "$STAGE" -type f ! -perm -u+x -exec chmod 644 {} +
chmod 640 "$STAGE/etc/$NAME/config.yaml"

install -d "$OUT"
DEB="$OUT/${NAME}_${VERSION}_${ARCH}.deb"
dpkg-deb --build --root-owner-group -Zxz "$STAGE" "$DEB" >&2
log "Depends: $DEPENDS"
echo "$DEB"
