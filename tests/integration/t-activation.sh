#!/bin/bash
# cofferd started by systemd-socket-activate: it takes the listening socket
# from LISTEN_FDS instead of binding its own, and serves requests on it.
. "$(dirname "$0")/lib.sh"
command -v systemd-socket-activate >/dev/null || skip_all "systemd-socket-activate not installed"

systemd-socket-activate -l "$COFFER_SOCKET" \
    "$COFFERD" --state-dir "$T/state" --audit-log "$T/audit.log" --socket "$T/unused.sock" \
    >>"$T/cofferd.log" 2>&1 &
ACT_PID=$!
# systemd-socket-activate forks cofferd on the first connection: stop both.
CLEANUP_EXTRA='kill $ACT_PID 2>/dev/null; pkill -TERM -f -- "--state-dir $T/state" 2>/dev/null; wait $ACT_PID 2>/dev/null'
for _ in $(seq 100); do [ -S "$COFFER_SOCKET" ] && break; sleep 0.05; done

ok "the activated socket exists before cofferd runs" test -S "$COFFER_SOCKET"
ok "the first connection starts cofferd and is answered" "$COFFER" status
ok "cofferd did not bind its own --socket path" test ! -e "$T/unused.sock"
ok "init over the activated socket" "$COFFER" operator init --keyfile "$T/unseal.key"
ok "put over the activated socket" sh -c 'printf v1 | "$1" put act/x' _ "$COFFER"
ok "get over the activated socket" sh -c '[ "$("$1" get act/x)" = v1 ]' _ "$COFFER"
ok "the activated daemon reports it was initialized (state kept across connections)" \
    sh -c '"$1" status --json | grep -q "\"initialized\":true"' _ "$COFFER"
ok "SIGTERM stops the activated cofferd" sh -c 'pkill -TERM -f -- "--state-dir $1/state" && sleep 0.3 && ! pgrep -f -- "--state-dir $1/state"' _ "$T"
ok "cofferd leaves the activated socket in place (the activator owns it)" test -S "$COFFER_SOCKET"
done_testing
