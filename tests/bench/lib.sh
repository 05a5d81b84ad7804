# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the benchmark scripts, which define fail MESSAGE (prints, exits 1).

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
