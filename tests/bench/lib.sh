# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the benchmark scripts, right after `set -eu`, with BENCH_NAME
# set (the name in their messages).

fail() {
        echo "bench ${BENCH_NAME:-}: $*" >&2
        exit 1
}

# wait_socket SOCKET PID LOG: until SOCKET exists; fails if PID exits first
# (showing the end of LOG) or after 10 s.
wait_socket() {
        _i=0
        while [ ! -S "$1" ]; do
                kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; fail "server for $1 exited during startup"; }
                _i=$((_i + 1))
                [ "$_i" -le 100 ] || { tail -n 20 "$3" >&2; fail "no socket at $1 after 10 s"; }
                sleep 0.1
        done
}

# init_store COFFER DIR: initialize (and unseal) a fresh daemon with a key
# file in DIR.
init_store() {
        "$1" operator init --keyfile "$2/unseal.key" >"$2/init.log" 2>&1 ||
                { cat "$2/init.log" >&2; fail "coffer operator init failed"; }
}

# A benchmark's scratch state: tmp (the directory), cofferd_pid, lg_pid (a
# load generator in flight), pids (more processes), mounted (non-empty: a
# tmpfs is mounted on $tmp/sessions). bench_traps stops and removes all of it
# on any exit.
tmp=
cofferd_pid=
lg_pid=
pids=
mounted=
bench_cleanup() {
        for _p in $lg_pid $pids $cofferd_pid; do kill "$_p" 2>/dev/null || true; done
        for _p in $lg_pid $pids $cofferd_pid; do wait "$_p" 2>/dev/null || true; done
        [ -z "$mounted" ] || umount -l "$tmp/sessions" 2>/dev/null || true
        [ -z "$tmp" ] || rm -rf "$tmp"
}
bench_traps() {
        trap bench_cleanup EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
}
