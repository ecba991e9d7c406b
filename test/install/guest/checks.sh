#!/bin/bash
# The install test inside a freshly booted Debian system (run by kp-install-test.service, as
# root, once the boot is done): what an operator does with the package, and what they would check.
#   apt install ./the.deb; knock-port init; systemctl enable --now knock-port; a curl knock from a
#   client (a second network namespace) opens the service for that client only; knock-port user
#   add + systemctl reload; apt remove leaves no rule; apt purge keeps the TLS files.
# Results: one "ok"/"not ok" line per check and the stage times on the console and in
# $IO/results, then "install: N passed, N failed"; the exit code in $IO/exit-code; then power off.
set -u
IO=/mnt/kp-io
# PKG (package name), DEB (its file name in /root), VERSION, SCALE (slowdown allowed for)
# shellcheck source=/dev/null
. "$IO/env"

GW=192.0.2.1            # the gateway's address on its external interface (TEST-NET-1)
CLIENT=192.0.2.2        # the first user's client
OTHER=192.0.2.3         # a second client address (the user added before the reload)
PORT=2222               # the protected service: kp-echo.socket answers "open"
CONNECT_S=$((2 * SCALE)) # a connect to an open port completes well within this, a dropped one never
passed=0
failed=0

say() { echo "$*" | tee -a "$IO/results"; }
ok() { passed=$((passed + 1)); say "ok - $1"; }
not_ok() { failed=$((failed + 1)); say "not ok - $1: $2"; }
# check DESCRIPTION EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi; }
# apt and debconf as in any script: no questions, no terminal.
export DEBIAN_FRONTEND=noninteractive
# The uptime, read with builtins only: a process start costs a fraction of a second under emulation.
now() {
  local up _
  read -r up _ </proc/uptime
  echo "$up"
}
# Each line of a command's output into $IO/$1 stamped with the uptime (where a slow stage's time goes).
stamped() {
  local line up _
  while IFS= read -r line; do
    read -r up _ </proc/uptime
    printf '[%s] %s\n' "$up" "$line"
  done >"$IO/$1"
}
# The boot stage counts from the kernel's start (uptime 0).
STAGE_AT=0
# stage NAME: the seconds since the previous stage ended (uptime: the boot counts from the kernel's start)
stage() {
  local at
  at=$(now)
  say "stage $1: $(echo "$at - $STAGE_AT" | awk '{ printf "%.1f", $1 - $3 }') s"
  STAGE_AT=$at
}
client() { ip netns exec kpclient "$@"; }

# open, closed (the connect timed out: the SYN was dropped), or what else happened, from address $1.
probe() {
  local out rc
  out=$(client curl -sS --connect-timeout "$CONNECT_S" -m $((CONNECT_S + 10)) --interface "$1" "telnet://$GW:$PORT" </dev/null 2>&1)
  rc=$?
  if [ $rc = 0 ] && [ "$out" = open ]; then echo open
  elif [ $rc = 28 ] && echo "$out" | grep -qi 'connect'; then echo closed
  else echo "curl exit $rc: $out"; fi
}

# The two curl lines of a client bundle (printed by init and user add), run from address $2.
knock() {
  local bundle=$1 from=$2 step1 step2 out rc
  step1=$(grep -m1 '^  curl -m ' "$bundle")
  step2=$(grep -m1 '^  curl --cacert ' "$bundle")
  [ -n "$step1" ] && [ -n "$step2" ] || { echo "no curl lines in $bundle"; return; }
  # Step 1 gets no answer by design: curl times out (exit 28).
  (cd /root && eval "client $step1 --interface $from" >/dev/null 2>&1)
  rc=$?
  [ $rc = 28 ] || { echo "step 1: curl exit $rc (expected 28, no answer)"; return; }
  out=$(cd /root && eval "client $step2 --interface $from -sS -m $((10 * SCALE))" 2>&1)
  echo "$out"
}

diagnose() {
  say "--- systemctl status knock-port"
  systemctl status --no-pager -l knock-port 2>&1 | tail -n 30 | tee -a "$IO/results"
  say "--- journalctl -u knock-port"
  journalctl --no-pager -u knock-port -n 40 2>&1 | tee -a "$IO/results"
}

finish() {
  stage checks
  say "install: $passed passed, $failed failed"
  if [ "$failed" = 0 ]; then echo 0 >"$IO/exit-code.tmp"; else echo 1 >"$IO/exit-code.tmp"; fi
  mv "$IO/exit-code.tmp" "$IO/exit-code"
  sync
  say "install: powering off"
  systemctl poweroff --force --force
}
trap finish EXIT

# --- the system is up: every unit started ---------------------------------------------------
state=$(systemctl is-system-running --wait 2>&1)
stage boot
check "the system booted with systemd as PID 1 and every unit started" "systemd running" "$(cat /proc/1/comm) $state"
[ "$state" = running ] || systemctl --failed --no-pager | tee -a "$IO/results"

# --- apt install ./the.deb: apt pulls in its dependencies ------------------------------------
(cd /root && apt install -y "./$DEB") 2>&1 | stamped apt-install.log
rc=${PIPESTATUS[0]}
stage "apt install"
check "apt install ./$DEB" 0 "$rc"
check "dpkg knows $PKG $VERSION as installed" "install ok installed $VERSION" "$(dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>&1)"
if [ "$rc" != 0 ]; then tail -n 30 "$IO/apt-install.log" | tee -a "$IO/results"; exit; fi
check "the unit is installed, not enabled" disabled "$(systemctl is-enabled knock-port 2>&1)"

# --- the network: the gateway's external interface and a client namespace behind it ---------
ip link add kpwan0 type veth peer name kpcl0 &&
  ip netns add kpclient &&
  ip link set kpcl0 netns kpclient &&
  ip addr add "$GW/24" dev kpwan0 &&
  ip link set kpwan0 up &&
  client ip addr add "$CLIENT/24" dev kpcl0 &&
  client ip addr add "$OTHER/24" dev kpcl0 &&
  client ip link set kpcl0 up &&
  client ip link set lo up
check "a client namespace behind the gateway's interface" 0 $?
check "the service answers before any gate" open "$(probe "$CLIENT")"

# --- knock-port init, then systemctl enable --now (Type=notify: returns once ready) ----------
# The operator's first steps (README): init makes the config, the TLS pair and a first user.
knock-port init --force --interface kpwan0 --host "$GW" --app echo --port "$PORT" >"$IO/admin.bundle" 2>&1
rc=$?
sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "$IO/admin.bundle" >/root/gateway.pem
stage "knock-port init"
check "knock-port init writes a config that check accepts" "0 1" "$rc $(grep -c 'knock-port check passes' "$IO/admin.bundle")"
if [ "$rc" != 0 ]; then tail -n 20 "$IO/admin.bundle" | tee -a "$IO/results"; exit; fi
# The one change to init's config: the step-2 window (10 s) scaled, as emulation is slow to send step 2.
sed -i "s/^\( *step2_https_duration:\) 10$/\1 $((10 * SCALE))/" /etc/knock-port/config.yaml
systemctl enable --now knock-port 2>&1 | stamped enable.log
rc=${PIPESTATUS[0]}
stage "systemctl enable --now (ready)"
check "systemctl enable --now knock-port" 0 "$rc"
check "the unit is active, Type=notify, enabled" "active notify enabled" \
  "$(systemctl is-active knock-port) $(systemctl show -P Type knock-port) $(systemctl is-enabled knock-port)"
if [ "$(systemctl is-active knock-port)" != active ]; then cat "$IO/enable.log"; diagnose; exit; fi
say "status: $(systemctl show -P StatusText knock-port)"

# --- the gate: closed, a knock opens it for that client only --------------------------------
check "the service port is closed to the client before a knock" closed "$(probe "$CLIENT")"
check "the knock's step 2 answers OK" OK "$(knock "$IO/admin.bundle" "$CLIENT")"
probe "$OTHER" >/root/other.probe & # waits out the connect timeout meanwhile
check "the service port is open to the client after its knock" open "$(probe "$CLIENT")"
wait
check "the service port stays closed to another address" closed "$(cat /root/other.probe)"
stage knock

# --- a second user: knock-port user add, then systemctl reload -------------------------------
knock-port user add bob --app echo --host "$GW" >"$IO/bob.bundle" 2>&1
check "knock-port user add bob" 0 $?
since=$(date +%s)
systemctl reload knock-port
check "systemctl reload knock-port" 0 $?
# systemctl reload returns once ExecReload has sent SIGHUP; systemd shows the unit reloading
# until the daemon's READY=1 (Debian 13's systemd tracks it; 12's does not).
for _ in $(seq $((10 * SCALE))); do
  [ "$(systemctl is-active knock-port)" = reloading ] || break
  sleep 1
done
check "the unit is active again after the reload" active "$(systemctl is-active knock-port)"
check "the daemon logs the reload" 1 "$(journalctl --no-pager -o cat -u knock-port --since "@$since" | grep -c 'config reloaded')"
status=$(systemctl show -P StatusText knock-port)
say "status: $status"
check "systemd's status line names no failed reload" 0 "$(echo "$status" | grep -c 'reload failed')"
check "bob's knock answers OK (the reloaded config)" OK "$(knock "$IO/bob.bundle" "$OTHER")"
check "the service port is open to bob's address" open "$(probe "$OTHER")"
stage reload
[ "$failed" = 0 ] || diagnose

# --- apt remove: the rules go; apt purge: the operator's TLS files stay ----------------------
tls_before=$(sha256sum /etc/knock-port/tls/cert.pem /etc/knock-port/tls/key.pem 2>&1)
check "the gate's nftables table is there before removal" 1 "$(nft list tables | grep -c knockport)"
apt remove -y "$PKG" 2>&1 | stamped apt-remove.log
check "apt remove $PKG" 0 "${PIPESTATUS[0]}"
check "the unit is stopped" inactive "$(systemctl is-active knock-port)"
check "no knock-port rule, set or table left in nft list ruleset" 0 "$(nft list ruleset | grep -ci knock)"
stage "apt remove"
apt purge -y "$PKG" 2>&1 | stamped apt-purge.log
check "apt purge $PKG" 0 "${PIPESTATUS[0]}"
check "dpkg no longer knows $PKG" "" "$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)"
check "purge keeps the operator's TLS certificate and key" "$tls_before" "$(sha256sum /etc/knock-port/tls/cert.pem /etc/knock-port/tls/key.pem 2>&1)"
check "purge removes the state directory and the program" "no no" \
  "$([ -e /var/lib/knock-port ] && echo yes || echo no) $([ -e /usr/lib/knock-port ] && echo yes || echo no)"
stage "apt purge"
