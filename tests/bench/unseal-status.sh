#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/unseal-status.sh BUILDDIR — part of `make bench`.
#
# An unseal is slow by design: Argon2id for a passphrase (~0.7 s), then a MAC
# check of every stored lease (~1.5 s a million). cofferd does both off its
# event loop, so other clients are answered meanwhile. Measured: one client's
# STATUS round trips while a passphrase store holding LEASES leases
# (default 1000000) unseals, against the same client on the same daemon
# before the unseal (the baseline, same run). A blocked loop shows as a
# max_ms of the whole unseal (p99 alone could hide it: one stalled request
# among thousands), and as few round trips during it.
#
#   bench unseal-status leases=N unseal_ms=U n=K p50_ms= p99_ms= max_ms= idle_p99_ms= idle_max_ms=
set -eu
BENCH_NAME=unseal-status
. "$(dirname "$0")/lib.sh"

B=${1:?usage: unseal-status.sh BUILDDIR}
LEASES=${LEASES:-1000000}
LG=$B/tests/bench/loadgen
POP=$B/tests/bench/lease-populate
for f in cofferd coffer tests/bench/loadgen tests/bench/lease-populate; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make bench)"
done
case $LEASES in ''|*[!0-9]*) fail "LEASES must be a non-negative integer: '$LEASES'" ;; esac
bench_traps

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-unseal-status.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 0700 "$tmp/state"
mkdir -m 0755 "$tmp/policy"
echo 'allow * * uid:0' >"$tmp/policy/50-bench.policy"
chmod 0644 "$tmp/policy/50-bench.policy"
printf 'max_leases_per_uid = 0\n' >"$tmp/cofferd.conf"
chmod 0644 "$tmp/cofferd.conf"
# The passphrase, without a newline: lease-populate reads the file as the key.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/pass"
chmod 0400 "$tmp/pass"
SOCK=$tmp/coffer.sock
COFFER_SOCKET=$SOCK
export COFFER_SOCKET

now_ms() { date +%s%3N; }
start_daemon() {
        rm -f "$SOCK"
        "$B/cofferd" --config "$tmp/cofferd.conf" --state-dir "$tmp/state" --socket "$SOCK" \
                --audit-log "$tmp/audit.log" --policy-dir "$tmp/policy" >>"$tmp/cofferd.log" 2>&1 &
        cofferd_pid=$!
        wait_socket "$SOCK" "$cofferd_pid" "$tmp/cofferd.log"
        until "$B/coffer" status >/dev/null 2>&1; do
                kill -0 "$cofferd_pid" 2>/dev/null || fail "cofferd exited during startup"
                sleep 0.01
        done
}
stop_daemon() {
        kill "$cofferd_pid" 2>/dev/null || true
        wait "$cofferd_pid" 2>/dev/null || true
        cofferd_pid=
}
# field LINE NAME: the number after NAME= in a loadgen line.
field() { echo "$1" | sed -n "s/.* $2=\\([0-9]*\\).*/\\1/p"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

start_daemon
"$B/coffer" operator init --passphrase <"$tmp/pass" >"$tmp/init.log" 2>&1 ||
        { cat "$tmp/init.log" >&2; fail "coffer operator init --passphrase failed"; }
stop_daemon
if [ "$LEASES" -gt 0 ]; then
        "$POP" --state-dir "$tmp/state" --keyfile "$tmp/pass" --count "$LEASES" --ttl 86400 >"$tmp/pop.out" ||
                fail "lease-populate failed"
fi
start_daemon

idle=$($LG --socket "$SOCK" --label unseal-status-idle --mode status --clients 1 --seconds 2 --warmup-ms 0 --max) ||
        fail "loadgen (idle) failed"
echo "$idle"

$LG --socket "$SOCK" --label unseal-status-during --mode status --clients 1 --seconds 600 --warmup-ms 0 --max \
        >"$tmp/lg.out" &
lg_pid=$!
sleep 0.2
t0=$(now_ms)
"$B/coffer" operator unseal <"$tmp/pass" >"$tmp/unseal.log" 2>&1 ||
        { cat "$tmp/unseal.log" >&2; fail "coffer operator unseal failed"; }
t1=$(now_ms)
kill -USR1 "$lg_pid"
wait "$lg_pid" || fail "loadgen (during the unseal) failed"
lg_pid=
during=$(cat "$tmp/lg.out")
echo "$during"
grep -q '"sealed":false' <<_EOF_ || fail "not unsealed after the unseal"
$("$B/coffer" status --json)
_EOF_
stop_daemon

ops=$(field "$during" ops_per_s)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 + 0.2 }')
n=$(awk -v o="$ops" -v s="$secs" 'BEGIN { printf "%d", o * s }')
echo "bench unseal-status leases=$LEASES unseal_ms=$((t1 - t0)) n=$n p50_ms=$(ms "$(field "$during" p50_us)")" \
        "p99_ms=$(ms "$(field "$during" p99_us)") max_ms=$(ms "$(field "$during" max_us)")" \
        "idle_p99_ms=$(ms "$(field "$idle" p99_us)") idle_max_ms=$(ms "$(field "$idle" max_us)")"
