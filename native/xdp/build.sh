#!/bin/sh
# Compiles the step-1 XDP program and embeds it in a libbpf skeleton header for the addon
# (binding.gyp runs this). Without clang or bpftool the header says why, and the addon builds
# without XDP: `step1_xdp` then reports that reason and the daemon keeps its kernel path.
# Usage: build.sh OUT_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
header="$out/step1.skel.h"

unavailable() {
  printf '// Built without the XDP program.\n#define KP_XDP_UNAVAILABLE "%s"\n' "$1" >"$header"
  echo "knock-port: the step-1 XDP program is not built: $1" >&2
  exit 0
}

command -v clang >/dev/null 2>&1 || unavailable "clang was missing at build time (install clang and bpftool, then rebuild the addon)"
command -v bpftool >/dev/null 2>&1 || [ -x /usr/sbin/bpftool ] || unavailable "bpftool was missing at build time (install bpftool, then rebuild the addon)"
bpftool=$(command -v bpftool || echo /usr/sbin/bpftool)
[ -f /usr/include/bpf/bpf_helpers.h ] || unavailable "libbpf-dev was missing at build time (install it, then rebuild the addon)"

# The kernel's UAPI headers include <asm/types.h>, which lives under the multiarch directory.
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$multiarch" -I"$here" \
  -c "$here/step1.bpf.c" -o "$out/step1.bpf.o"
"$bpftool" gen skeleton "$out/step1.bpf.o" name kp_step1 >"$header.tmp"
mv "$header.tmp" "$header"
