#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/run.sh BUILDDIR — `make bench`.
#
# Measures GET round trips against a dev cofferd and against echod (the
# physical floor: the same frames echoed by a bare epoll loop) with one
# harness, at 64 clients and at 1, and prints coffer's throughput as a ratio
# of the floor. An echod on sd-event (cofferd's loop) is measured too, so the
# event loop's own share of the gap is visible.
#
# Then token issue (coffer_token_issue, a lease insert committed to SQLite
# before the reply) against a GET through the same client library, at 64
# clients and at 1, and the share of the daemon's time spent in
# fsync/fdatasync while it issues, from a short trace of just those two
# syscalls (perf; strace -c as a slower fallback; skipped if neither works).
#
# Environment: BENCH_SECONDS (default 5) per measurement.
set -eu
BENCH_NAME=run
. "$(dirname "$0")/lib.sh"

B=${1:?usage: run.sh BUILDDIR}
SECS=${BENCH_SECONDS:-5}
LG=$B/tests/bench/loadgen

bench_traps


# loadgen SOCKET LABEL MODE CLIENTS: print the bench line; the ops/s in $ops.
# In the background so that a signal to this script is handled at once.
loadgen() {
        $LG --socket "$1" --label "$2" --mode "$3" --clients "$4" --seconds "$SECS" \
                --name bench/small --audience bench-api --ttl 600 >"$tmp/loadgen.out" &
        lg_pid=$!
        rc=0
        wait "$lg_pid" || rc=$?
        lg_pid=
        [ "$rc" -eq 0 ] || fail "loadgen $2 at $4 clients failed (see above)"
        line=$(cat "$tmp/loadgen.out")
        echo "$line"
        ops=$(echo "$line" | sed -n 's/.* ops_per_s=\([0-9.]*\) .*/\1/p')
        [ -n "$ops" ] || fail "cannot read ops_per_s from: $line"
}

case $SECS in
''|*[!0-9]*|0) fail "BENCH_SECONDS must be a positive integer: $SECS" ;;
esac
for f in cofferd coffer tests/bench/echod tests/bench/loadgen; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make bench)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench.XXXXXX")
mkdir -m 0700 "$tmp/state"
SOCK=$tmp/coffer.sock
ECHO=$tmp/echo.sock
ECHO_SD=$tmp/echo-sd.sock

# ratio LABEL CLIENTS A B: print A/B.
ratio() {
        awk -v l="$1" -v c="$2" -v a="$3" -v b="$4" 'BEGIN { printf "ratio %s clients=%s ops_per_s=%.3f\n", l, c, a / b }'
}

# trace_fsync SECONDS OUT: time the daemon's fsync/fdatasync calls for
# SECONDS; OUT gets "TOOL CALLS TOTAL_SECONDS". Only those two syscalls are
# traced (perf), so the daemon is barely slowed; strace -c stops it at every
# syscall and is the fallback only. Fails when neither can trace here.
trace_fsync() {
        if command -v perf >/dev/null &&
                perf record -q -o "$tmp/fsync.perf" -p "$cofferd_pid" \
                        -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
                        -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync \
                        -- sleep "$1" >"$tmp/perf.log" 2>&1; then
                perf script -i "$tmp/fsync.perf" -F tid,time,event 2>>"$tmp/perf.log" | awk '
                        { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) t = substr($i, 1, length($i) - 1) }
                        /sys_enter_f(data)?sync/ { s[$1] = t }
                        /sys_exit_f(data)?sync/ && ($1 in s) { sum += t - s[$1]; n++; delete s[$1] }
                        END { printf "perf %d %.6f\n", n, sum }' >"$2"
                return 0
        fi
        command -v strace >/dev/null || return 1
        timeout -s INT "$1" strace -c -w -f -p "$cofferd_pid" -o "$tmp/strace.out" >/dev/null 2>&1
        awk '$NF == "fdatasync" || $NF == "fsync" { sum += $2; n += $4 }
             END { if (NR) printf "strace %d %.6f\n", n, sum }' "$tmp/strace.out" >"$2" 2>/dev/null
        [ -s "$2" ]
}

# fsync_share CLIENTS: issue tokens at CLIENTS while tracing fsync for 2 s.
fsync_share() {
        win=2
        $LG --socket "$SOCK" --label token-issue-traced --mode token --clients "$1" --seconds $((win + 1)) \
                --audience bench-api --ttl 600 >"$tmp/loadgen.out" &
        lg_pid=$!
        sleep 1
        traced=0
        trace_fsync "$win" "$tmp/fsync.out" && traced=1
        rc=0
        wait "$lg_pid" || rc=$?
        lg_pid=
        [ "$rc" -eq 0 ] || fail "loadgen token-issue-traced at $1 clients failed (see above)"
        if [ "$traced" = 0 ]; then
                echo "bench token-issue-fsync clients=$1 skipped: neither perf nor strace can trace cofferd here"
                return 0
        fi
        ops=$(sed -n 's/.* ops_per_s=\([0-9.]*\) .*/\1/p' "$tmp/loadgen.out")
        read -r tool calls secs <"$tmp/fsync.out"
        awk -v c="$1" -v w="$win" -v ops="$ops" -v tool="$tool" -v n="$calls" -v s="$secs" 'BEGIN {
                printf "bench token-issue-fsync clients=%s fsync_share=%.2f fsync_per_op=%.2f fsync_mean_us=%.0f ops_per_s_traced=%.0f tool=%s\n",
                        c, s / w, (ops > 0 ? n / (ops * w) : 0), (n > 0 ? s / n * 1e6 : 0), ops, tool }'
}

# A realistic policy: 2,000 per-uid rules for other users' paths, group
# and deny rules, and the rule that lets the bench user (nobody) read.
mkdir -p "$tmp/policy"
awk 'BEGIN {
        for (i = 0; i < 2000; i++) printf "allow read,list secret:team%d/users/u%d/* uid:%d\n", i % 50, i, 20000 + i
        for (i = 0; i < 200; i++) printf "deny read secret:prod/team%d/** uid:%d\n", i, 20000 + i
        print "allow read secret:bench/* uid:65534"
}' >"$tmp/policy/50-bench.policy"
chmod 0755 "$tmp" "$tmp/policy"
chmod 0644 "$tmp/policy/50-bench.policy"
# Token issue runs fill uid 0's lease count far past the default cap.
# The bench measures what a request costs, so no cap on leases, and no audit
# rate per uid (the policy run is nobody's 64 clients: far over the default
# 50 a second, which t-audit-limits.sh tests).
printf 'max_leases_per_uid = 0\naudit_rate_per_uid = 0\n' >"$tmp/cofferd.conf"
chmod 0644 "$tmp/cofferd.conf"
"$B/cofferd" --config "$tmp/cofferd.conf" --state-dir "$tmp/state" --socket "$SOCK" --audit-log "$tmp/audit.log" \
        --policy-dir "$tmp/policy" >"$tmp/cofferd.log" 2>&1 &
cofferd_pid=$!
pids="$pids $cofferd_pid"
wait_socket "$SOCK" "$cofferd_pid" "$tmp/cofferd.log"

COFFER_SOCKET=$SOCK
export COFFER_SOCKET
"$B/coffer" operator init --keyfile "$tmp/unseal.key" >"$tmp/init.log" 2>&1 ||
        { cat "$tmp/init.log" >&2; fail "coffer operator init failed"; }
value=bench-0123456789abcdef-012345678 # 32 bytes, not a real secret
printf '%s' "$value" | "$B/coffer" put bench/small >"$tmp/put.log" 2>&1 ||
        { cat "$tmp/put.log" >&2; fail "coffer put bench/small failed"; }
got=$("$B/coffer" get bench/small 2>"$tmp/get.log") ||
        { cat "$tmp/get.log" >&2; fail "coffer get bench/small failed"; }
[ "$got" = "$value" ] || fail "coffer get bench/small returned a different value"

"$B/tests/bench/echod" "$ECHO" >"$tmp/echod.log" 2>&1 &
pids="$pids $!"
wait_socket "$ECHO" "$!" "$tmp/echod.log"
"$B/tests/bench/echod" --sd-event "$ECHO_SD" >"$tmp/echod-sd.log" 2>&1 &
pids="$pids $!"
wait_socket "$ECHO_SD" "$!" "$tmp/echod-sd.log"

echo "bench: ${SECS}s per run, $(nproc 2>/dev/null || echo '?') CPUs, client and servers share them"
loadgen "$SOCK" coffer-get get 64
get64=$ops
# The same, as a user the policy must decide for (2,201 rules loaded).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        LG_SAVED=$LG
        LG="setpriv --reuid=65534 --regid=65534 --clear-groups $LG"
        loadgen "$SOCK" coffer-get-policy get 64
        LG=$LG_SAVED
fi
loadgen "$ECHO" echo echo 64
echo64=$ops
loadgen "$ECHO_SD" echo-sdevent echo 64
loadgen "$SOCK" coffer-get get 1
loadgen "$ECHO" echo echo 1

awk -v a="$get64" -v b="$echo64" 'BEGIN { printf "ratio coffer-get/echo ops_per_s=%.2f\n", a / b }'

# Token issue (as root, the daemon's uid: allowed by the builtin rule) next
# to a GET through the same library calls, so only the daemon's work differs.
for c in 64 1; do
        loadgen "$SOCK" coffer-lib-get lib-get "$c"
        libget=$ops
        loadgen "$SOCK" token-issue token "$c"
        ratio token-issue/get "$c" "$ops" "$libget"
done
fsync_share 1
fsync_share 64

kill -0 "$cofferd_pid" 2>/dev/null || { tail -n 20 "$tmp/cofferd.log" >&2; fail "cofferd died during the run"; }
