#!/bin/bash
# Many clients at once: 1000 idle connections and 8 garbage senders do not
# stop a well-behaved client from being served; idle connections are closed
# after idle_timeout; one uid cannot take more than max_connections_per_uid.
. "$(dirname "$0")/lib.sh"

BG=
CLEANUP_EXTRA='[ -n "$BG" ] && kill $BG 2>/dev/null; wait 2>/dev/null'
CONF="$T/cofferd.conf"
# Room for 1000 idle + 8 garbage + the good client from one uid during the crowd.
printf 'max_connections_per_uid = 2000\nidle_timeout = 30\n' >"$CONF"; chmod 0600 "$CONF"
start_daemon --config "$CONF" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'load-value' | "$COFFER" put load/secret 2>/dev/null

reload() {   # reload CONFIG-TEXT: rewrite the config and SIGHUP, wait for the log line
    local mark
    printf '%s\n' "$1" >"$CONF"
    mark=$(log_mark)
    kill -HUP "$DAEMON_PID"
    wait_until 5 log_has "$mark" 'configuration reloaded'
}

# ---- the crowd ----
ok "crowd: 1000 idle connections + 8 garbage senders for 10 s; the good client is always served" \
    "$CROWD" "$COFFER_SOCKET" --idle 1000 --garbage 8 --seconds 10 --name load/secret
cp "$T/last.out" "$T/crowd.out"
note "crowd: $(cat "$T/crowd.out")"
served=$(sed -n 's/.*served=\([0-9]*\).*/\1/p' "$T/crowd.out")
ok "crowd: the good client was served at least 100 times in 10 s" test "${served:-0}" -ge 100
ok "crowd: every idle connection stayed open (idle_timeout 30 s)" grep -q ' idle=1000 idle_closed=0 ' "$T/crowd.out"
ok "the daemon is alive after the crowd" kill -0 "$DAEMON_PID"
ok_out "the daemon serves normally after the crowd" '^load-value$' "$COFFER" get load/secret

# ---- idle timeout ----
reload "$(printf 'max_connections_per_uid = 2000\nidle_timeout = 2')"
"$CROWD" "$COFFER_SOCKET" --idle 200 --garbage 0 --seconds 5 >"$T/idle.out" 2>&1
note "idle: $(tail -n 1 "$T/idle.out")"
closed=$(sed -n 's/.*idle_closed=\([0-9]*\).*/\1/p' "$T/idle.out")
ok "idle_timeout = 2: 200 idle connections held for 5 s are all closed by the daemon (closed ${closed:-?})" \
    test "${closed:-0}" -ge 200
t0=$(date +%s%N)
out=$("$RAWCLIENT" "$COFFER_SOCKET" --read-timeout 8000)
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
ok "an idle connection is closed after 2-3.5 s (took $ms ms)" test "$out" = eof -a "$ms" -ge 1500 -a "$ms" -le 3500
ok "a client trickling a frame slower than idle_timeout is closed too" \
    sh -c '"$1" "$2" --frame 1 --trickle 300 --read-timeout 8000 | grep -qxE "eof|reset"' _ "$RAWCLIENT" "$COFFER_SOCKET"

# ---- connections per uid ----
reload "$(printf 'max_connections_per_uid = 50\nidle_timeout = 60')"
if [ "$(id -u)" = 0 ]; then
    holder() { exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$CROWD" "$COFFER_SOCKET" --idle 50 --garbage 0 --seconds 4; }
    as_hog() { as_nobody "$@"; }
    who="nobody"
else
    holder() { exec "$CROWD" "$COFFER_SOCKET" --idle 50 --garbage 0 --seconds 4; }
    as_hog() { "$@"; }
    who="this uid"
fi
# The refusal comes at accept, before any request: the probe sends nothing
# (a request racing the close would turn the EOF into a reset).
refused() { as_hog "$RAWCLIENT" "$COFFER_SOCKET" --read-timeout 500 >"$T/probe.out" 2>&1 &&
            grep -q 'too many connections' "$T/probe.out"; }
served() { as_hog "$RAWCLIENT" "$COFFER_SOCKET" --frame 1 --read-timeout 500 >"$T/probe.out" 2>&1 &&
           grep -q 'reply op=0x8001' "$T/probe.out"; }
holder >"$T/holder.out" 2>&1 &
BG=$!
wait_until 5 grep -q 'idle connections open' "$T/holder.out"   # all 50 are in
wait_until 5 refused
ok "the 51st connection of $who gets an error frame 'too many connections'" \
    grep -qE '^reply op=0xffff id=0 code=87 msg=too many connections from your uid' "$T/probe.out"
ok "... and is then closed" \
    sh -c '[ "$(grep -c "^reply" "$1")" = 1 ] && tail -n1 "$1" | grep -qx eof' _ "$T/probe.out"
if [ "$(id -u)" = 0 ]; then
    ok_out "meanwhile root is still served" '^load-value$' "$COFFER" get load/secret
    ok_out "meanwhile another uid (uid 1) is still served" '"initialized":true' \
        setpriv --reuid=1 --regid=1 --clear-groups "$COFFER" status --json
else
    skip "meanwhile root is still served" "needs root"
    skip "meanwhile another uid is still served" "needs root"
fi
wait "$BG"
BG=
note "holder: $(tr "\n" " " <"$T/holder.out")"
ok "once the 50 are closed, $who is served again" wait_until 5 served
ok "the daemon is alive at the end" kill -0 "$DAEMON_PID"

done_testing
