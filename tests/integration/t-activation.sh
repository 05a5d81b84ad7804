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
kill "$ACT_PID" 2>/dev/null; wait "$ACT_PID" 2>/dev/null

# Two sockets, named as cofferd.socket and cofferd-creds.socket name them: the
# API socket and systemd's credential socket.
rm -f "$COFFER_SOCKET"
CS=$T/act-creds.sock
systemd-socket-activate -l "$COFFER_SOCKET" -l "$CS" --fdname=coffer:creds \
    "$COFFERD" --state-dir "$T/state" --audit-log "$T/audit.log" --socket "$T/unused.sock" \
    --creds-socket "$T/unused-creds.sock" >>"$T/cofferd.log" 2>&1 &
ACT_PID=$!
for _ in $(seq 100); do [ -S "$CS" ] && break; sleep 0.05; done
ok "with two named sockets, the API socket (fd name coffer) serves requests" "$COFFER" status
ok "...the store is the same one" sh -c '"$1" operator unseal --keyfile "$2/unseal.key" && [ "$("$1" get act/x)" = v1 ]' _ "$COFFER" "$T"
/usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.shutdown(socket.SHUT_WR); sys.exit(len(s.recv(10)))' "$CS"
ok "the socket named creds is the credential responder: a non-systemd request gets nothing" test $? -eq 0
ok "...and is audited as a creds-load refusal" grep -q '"op":"creds-load".*not systemd' "$T/audit.log"
ok "cofferd bound neither of its own paths" sh -c "! test -e '$T/unused.sock' && ! test -e '$T/unused-creds.sock'"
done_testing
