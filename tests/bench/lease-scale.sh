#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/lease-scale.sh BUILDDIR — part of `make bench`.
#
# cofferd holding a million live leases. lease-populate writes them into a
# stopped daemon's store through the daemon's own lease code (so every row
# has a valid MAC): 90% token leases for a day, 10% ending together at one
# chosen second after the daemon is back up. Then, against an empty store
# measured the same way in the same run as the baseline:
#   - restart: start until the first reply (the leases are loaded before the
#     socket is served), then `coffer operator unseal --keyfile` (every
#     lease's MAC is checked);
#   - memory: VmRSS and VmHWM after the unseal;
#   - GET latency (loadgen, 4 clients) in a quiet window, then in a window
#     spanning the moment the 10% expire at once. How long the expiry takes
#     and its longest batch (during which nothing is served) are what cofferd
#     logs when the backlog is done ("N lease(s) expired in M ms (longest
#     batch K ms)").
#     A stall hits only the few requests in flight, so p99 may not show it:
#     compare max and ops/s too. Then the daemon is stopped and the rows
#     left in the store are counted.
#
# Environment: BENCH_SECONDS (default 5) per latency window; LEASES (default
# 1000000, at least 10) to scale down for a quick run; LEASE_SCALE_MARGIN
# (seconds, default 0) to add to the time left before the 10% expire, should
# a slow machine not be ready in time (the script says so when it happens).
set -eu
BENCH_NAME=lease-scale
. "$(dirname "$0")/lib.sh"

B=${1:?usage: lease-scale.sh BUILDDIR}
SECS=${BENCH_SECONDS:-5}
LEASES=${LEASES:-1000000}
EXTRA=${LEASE_SCALE_MARGIN:-0}
CLIENTS=4
LG=$B/tests/bench/loadgen
POP=$B/tests/bench/lease-populate

bench_traps


now_ms() { date +%s%3N; }

num() {
        case $2 in
        ''|*[!0-9]*) fail "$1 must be a non-negative integer: '$2'" ;;
        esac
}
num BENCH_SECONDS "$SECS"
num LEASES "$LEASES"
num LEASE_SCALE_MARGIN "$EXTRA"
[ "$SECS" -gt 0 ] || fail "BENCH_SECONDS must be positive"
[ "$LEASES" -ge 10 ] || fail "LEASES must be at least 10"
for f in cofferd coffer tests/bench/loadgen tests/bench/lease-populate; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make bench)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-lease-scale.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 0700 "$tmp/state"
mkdir -m 0755 "$tmp/policy"
SOCK=$tmp/coffer.sock
KEY=$tmp/unseal.key
echo 'allow * * uid:0' >"$tmp/policy/50-bench.policy"
chmod 0644 "$tmp/policy/50-bench.policy"
# 1,000 principals hold 1,000 leases each: no per-uid cap in the way.
printf 'max_leases_per_uid = 0\n' >"$tmp/cofferd.conf"
chmod 0644 "$tmp/cofferd.conf"
COFFER_SOCKET=$SOCK
export COFFER_SOCKET

start_daemon() {
        rm -f "$SOCK"
        "$B/cofferd" --config "$tmp/cofferd.conf" --state-dir "$tmp/state" --socket "$SOCK" \
                --audit-log "$tmp/audit.log" --policy-dir "$tmp/policy" >>"$tmp/cofferd.log" 2>&1 &
        cofferd_pid=$!
}

stop_daemon() {
        kill "$cofferd_pid" 2>/dev/null || true
        wait "$cofferd_pid" 2>/dev/null || true
        cofferd_pid=
}

# wait_reply: until `coffer status` gets an answer (the socket is bound
# before the leases are loaded, so connecting alone proves nothing).
wait_reply() {
        deadline=$(($(now_ms) + 600000))
        until "$B/coffer" status >/dev/null 2>"$tmp/status.err"; do
                kill -0 "$cofferd_pid" 2>/dev/null || { tail -n 20 "$tmp/cofferd.log" >&2; fail "cofferd exited during startup"; }
                [ "$(now_ms)" -lt "$deadline" ] || { cat "$tmp/status.err" >&2; fail "cofferd did not answer within 10 minutes"; }
                sleep 0.01
        done
}

# restart: start the daemon on the state dir and unseal it; sets
# listen_ms, unseal_ms, rss_kib, hwm_kib.
restart() {
        t0=$(now_ms)
        start_daemon
        wait_reply
        t1=$(now_ms)
        "$B/coffer" operator unseal --keyfile "$KEY" >"$tmp/unseal.log" 2>&1 ||
                { cat "$tmp/unseal.log" >&2; fail "coffer operator unseal failed"; }
        t2=$(now_ms)
        listen_ms=$((t1 - t0))
        unseal_ms=$((t2 - t1))
        rss_kib=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$cofferd_pid/status")
        hwm_kib=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$cofferd_pid/status")
}

# get_window LABEL SECONDS: GET latency; the line in $line, fields in $p50 $p99 $max.
# SIGUSR1 to $lg_pid ends the window early.
get_window_start() {
        $LG --socket "$SOCK" --label "$1" --mode get --clients "$CLIENTS" --seconds "$2" --max \
                --name bench/small >"$tmp/loadgen.out" &
        lg_pid=$!
}
get_window_end() {
        rc=0
        wait "$lg_pid" || rc=$?
        lg_pid=
        [ "$rc" -eq 0 ] || fail "loadgen failed (see above)"
        line=$(cat "$tmp/loadgen.out")
        echo "$line"
        ops=$(echo "$line" | sed -n 's/.* ops_per_s=\([0-9]*\).*/\1/p')
        p50=$(echo "$line" | sed -n 's/.* p50_us=\([0-9]*\).*/\1/p')
        p99=$(echo "$line" | sed -n 's/.* p99_us=\([0-9]*\).*/\1/p')
        max=$(echo "$line" | sed -n 's/.* max_us=\([0-9]*\).*/\1/p')
        if [ -z "$p99" ] || [ -z "$max" ]; then
                fail "cannot read the latencies from: $line"
        fi
}

echo "bench: lease-scale with $LEASES leases; ${SECS}s latency windows, $CLIENTS GET clients, $(nproc 2>/dev/null || echo '?') CPUs"

# Baseline: an empty store, restarted and measured the same way.
start_daemon
wait_reply
"$B/coffer" operator init --keyfile "$KEY" >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; fail "coffer operator init failed"; }
printf '%s' bench-0123456789abcdef-012345678 | "$B/coffer" put bench/small >"$tmp/put.log" 2>&1 ||
        { cat "$tmp/put.log" >&2; fail "coffer put failed"; }
stop_daemon
restart
listen_empty_ms=$listen_ms
unseal_empty_ms=$unseal_ms
rss_empty_kib=$rss_kib
stop_daemon

# Populate, daemon stopped: the long-lived 90% first; their rate sets how
# long the rest of the setup is given before the 10% expire.
long=$((LEASES - LEASES / 10))
short=$((LEASES / 10))
"$POP" --state-dir "$tmp/state" --keyfile "$KEY" --count "$long" --ttl 86400 >"$tmp/pop.out" ||
        fail "lease-populate failed"
sed 's/^bench lease-populate/bench lease-scale-populate/' "$tmp/pop.out"
pop_ms=$(sed -n 's/.* ms=\([0-9]*\) .*/\1/p' "$tmp/pop.out")
# Populating the 10%, restart and unseal all scale with what populate just
# took; the quiet window and fixed costs come on top.
margin=$((8 + SECS + EXTRA + pop_ms * 6 / 10000))
expire_at=$(($(date +%s) + margin))
"$POP" --state-dir "$tmp/state" --keyfile "$KEY" --count "$short" --expire-at "$expire_at" >"$tmp/pop.out" ||
        fail "lease-populate failed"
sed 's/^bench lease-populate/bench lease-scale-populate/' "$tmp/pop.out"

restart
loaded=$(sed -n 's/^cofferd: \([0-9]*\) live lease(s) loaded$/\1/p' "$tmp/cofferd.log" | tail -n 1)
[ "${loaded:-0}" -ge "$LEASES" ] || fail "cofferd loaded ${loaded:-no} leases, expected $LEASES"
echo "bench lease-scale leases=$LEASES restart_listen_ms=$listen_ms restart_listen_empty_ms=$listen_empty_ms unseal_ms=$unseal_ms unseal_empty_ms=$unseal_empty_ms"
awk -v n="$LEASES" -v r="$rss_kib" -v e="$rss_empty_kib" -v h="$hwm_kib" 'BEGIN {
        printf "bench lease-scale leases=%d rss_kib=%d hwm_kib=%d rss_empty_kib=%d bytes_per_lease=%.0f\n", n, r, h, e, (r - e) * 1024 / n
        printf "ratio lease-scale/empty rss=%.1f\n", r / e }'

get_window_start lease-scale-get-quiet "$SECS"
get_window_end
ops_quiet=$ops
p50_quiet=$p50
p99_quiet=$p99
max_quiet=$max

# The expiring window: from 1 s before the expiry second (after warm-up)
# until the revocation list has not been rewritten for 2 s.
left=$((expire_at * 1000 - 1500 - $(now_ms)))
[ "$left" -gt 0 ] || fail "setup took too long: the $short leases began to expire before the window; rerun with LEASE_SCALE_MARGIN=$((2 - left / 1000))"
sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
mark=$(wc -l <"$tmp/cofferd.log")
get_window_start lease-scale-get-expiring 3600
# cofferd logs "N lease(s) expired in M ms (longest batch K ms)" when a
# backlog of expiries is done; it expires in batches and serves clients in
# between.
until_ms=$((expire_at * 1000 + 600000))
done_line=
while :; do
        done_line=$(tail -n +"$((mark + 1))" "$tmp/cofferd.log" | grep -E '^cofferd: [0-9]+ lease\(s\) expired in' | tail -n 1)
        [ -z "$done_line" ] || break
        [ "$(now_ms)" -lt "$until_ms" ] || fail "the expiry did not finish within 10 minutes"
        kill -0 "$cofferd_pid" 2>/dev/null || { tail -n 20 "$tmp/cofferd.log" >&2; fail "cofferd died during the expiry"; }
        kill -0 "$lg_pid" 2>/dev/null || break
        sleep 0.05
done
# One more second of GETs after the expiry, then stop the window.
sleep 1
kill -USR1 "$lg_pid" 2>/dev/null || true
get_window_end
[ -n "$done_line" ] || fail "cofferd never reported the expiry: did the leases expire?"
expired_n=$(echo "$done_line" | sed -n 's/^cofferd: \([0-9]*\) lease.*/\1/p')
expire_ms=$(echo "$done_line" | sed -n 's/.* expired in \([0-9.]*\) ms.*/\1/p')
step_max=$(echo "$done_line" | sed -n 's/.*longest batch \([0-9.]*\) ms.*/\1/p')

stop_daemon
rows=$("$POP" --state-dir "$tmp/state" --rows) || fail "cannot count the leases left in the store"
echo "bench lease-scale-store after_expiry $rows (expected rows=$long expired=0)"

awk -v a="$p99" -v b="$p99_quiet" -v c="$max" -v d="$max_quiet" -v e="$ops" -v f="$ops_quiet" 'BEGIN {
        printf "ratio lease-scale expiring/quiet get_p99=%.1f get_max=%.1f get_ops_per_s=%.2f\n", a / b, c / d, e / f }'
echo "bench lease-scale leases=$LEASES rss_kib=$rss_kib rss_empty_kib=$rss_empty_kib restart_listen_ms=$listen_ms unseal_ms=$unseal_ms get_ops_quiet=$ops_quiet get_p50_quiet_us=$p50_quiet get_p99_quiet_us=$p99_quiet get_max_quiet_us=$max_quiet get_ops_expiring=$ops get_p50_expiring_us=$p50 get_p99_expiring_us=$p99 get_max_expiring_us=$max expiring=$short expired=$expired_n expire_ms=$expire_ms expire_batch_max_ms=$step_max"
