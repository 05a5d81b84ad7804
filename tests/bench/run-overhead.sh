#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/run-overhead.sh BUILDDIR — what `coffer run` costs a job.
#
# Starts a dev cofferd (like run.sh), stores three 32-byte secrets, then times
# N runs of `coffer run --file a=... --file b=... --file c=... -- /bin/true`
# against N bare runs of /bin/true from the same shell loop, and prints
#   bench run-overhead files=3 ms_coffer_run=X ms_bare=Y ratio=X/Y
# (milliseconds per run, wall clock). A coffer run is: connect, three GETs,
# a tmpfs directory and three files, a watcher process, the job, cleanup.
#
# The real binary is timed, not libtool's wrapper script (which alone costs
# more than coffer run does).
#
# Environment: RUN_ITERATIONS (default 200).
set -eu
BENCH_NAME=run-overhead
. "$(dirname "$0")/lib.sh"

B=${1:?usage: run-overhead.sh BUILDDIR}
N=${RUN_ITERATIONS:-200}

bench_traps


case $N in
''|*[!0-9]*|0) fail "RUN_ITERATIONS must be a positive integer: $N" ;;
esac
for f in cofferd coffer; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make)"
done
COFFER=$B/coffer
if [ -x "$B/.libs/coffer" ]; then
        COFFER=$B/.libs/coffer
        LD_LIBRARY_PATH=$B/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export LD_LIBRARY_PATH
fi
TRUE=$(command -v true)
[ -x /bin/true ] && TRUE=/bin/true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench.XXXXXX")
mkdir -m 0700 "$tmp/state"
mkdir -p "$tmp/policy"
printf 'allow * * uid:%s\n' "$(id -u)" >"$tmp/policy/50-bench.policy"
chmod 0755 "$tmp" "$tmp/policy"
chmod 0644 "$tmp/policy/50-bench.policy"
SOCK=$tmp/coffer.sock
COFFER_AUDIT_NO_JOURNAL=1 "$B/cofferd" --state-dir "$tmp/state" --socket "$SOCK" --audit-log "$tmp/audit.log" \
        --policy-dir "$tmp/policy" >"$tmp/cofferd.log" 2>&1 &
cofferd_pid=$!
wait_socket "$SOCK" "$cofferd_pid" "$tmp/cofferd.log"
COFFER_SOCKET=$SOCK
export COFFER_SOCKET
init_store "$COFFER" "$tmp"
for s in a b c; do
        printf 'bench-%s-0123456789abcdef-0123456' "$s" | "$COFFER" put "bench/$s" >"$tmp/put.log" 2>&1 ||
                { cat "$tmp/put.log" >&2; fail "coffer put bench/$s failed"; }
done
"$COFFER" run --file a=bench/a --file b=bench/b --file c=bench/c -- \
        sh -c 'test "$(cat "$COFFER_SECRETS_DIR/a")" = bench-a-0123456789abcdef-0123456' ||
        fail "coffer run does not deliver the files"

now_ns() { date +%s%N; }

# loop_ms CMD...: N runs of CMD; prints the milliseconds per run.
loop_ms() {
        t0=$(now_ns)
        i=0
        while [ "$i" -lt "$N" ]; do
                "$@" || fail "run $i of $* failed"
                i=$((i + 1))
        done
        t1=$(now_ns)
        awk -v d="$((t1 - t0))" -v n="$N" 'BEGIN { printf "%.3f", d / n / 1e6 }'
}

count_dirs() { find /dev/shm "${XDG_RUNTIME_DIR:-/dev/shm}" -maxdepth 1 -name 'coffer-run.*' 2>/dev/null | wc -l; }
before=$(count_dirs)
loop_ms "$TRUE" >/dev/null # warm up caches
bare=$(loop_ms "$TRUE")
run=$(loop_ms "$COFFER" run --file a=bench/a --file b=bench/b --file c=bench/c -- "$TRUE")
kill -0 "$cofferd_pid" 2>/dev/null || { tail -n 20 "$tmp/cofferd.log" >&2; fail "cofferd died during the run"; }
left=$(($(count_dirs) - before))
[ "$left" -le 0 ] || echo "bench: warning: $left coffer-run directories left behind" >&2
echo "bench: $N iterations, $(nproc 2>/dev/null || echo '?') CPUs"
awk -v r="$run" -v b="$bare" \
        'BEGIN { printf "bench run-overhead files=3 ms_coffer_run=%.3f ms_bare=%.3f ratio=%.2f\n", r, b, r / b }'
