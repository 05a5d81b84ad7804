#!/bin/bash
# The connection layer keeps every reply of a request it ran: pipelined
# requests wait while the client has not read its replies (back-pressure)
# instead of being answered into a full buffer and dropped, and a client that
# half-closes after sending still gets its whole reply.
. "$(dirname "$0")/lib.sh"

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
head -c 700000 /dev/urandom >"$T/big"
"$COFFER" put conn/big --file "$T/big" >/dev/null 2>&1 || { echo "Bail out! put failed"; exit 1; }

replies() { grep -cE -- "$1" "$T/last.out"; }   # replies ERE: how many lines of the last output match

# ---- pipelining ----
ok "3 pipelined GETs of a 700 kB value are sent" "$RAWCLIENT" "$COFFER_SOCKET" \
    --frame 17 --id 1 --field 1:str:conn/big --frame 17 --id 2 --field 1:str:conn/big \
    --frame 17 --id 3 --field 1:str:conn/big --replies 3 --read-timeout 10000
is "... and all 3 are answered with the whole value" "$(replies '^reply op=0x8011 id=[123] code=0 msg= value_len=700000$')" 3
is "... and the connection stays open" "$(tail -n 1 "$T/last.out")" open

args=()
for i in $(seq 1 20000); do args+=(--frame 1 --id "$i"); done
ok "20,000 pipelined STATUS requests are sent" "$RAWCLIENT" "$COFFER_SOCKET" "${args[@]}" \
    --replies 20000 --read-timeout 10000
is "... and every one is answered" "$(replies '^reply op=0x8001 id=[0-9]+ code=0 msg=( |$)')" 20000
is "... in order" "$(sed -n '20001s/^reply op=0x8001 id=\([0-9]*\) .*/\1/p' "$T/last.out")" 20000
ok "the daemon serves normally afterwards" "$COFFER" status

# ---- half-close ----
ok "a client that shuts down its write side after a GET of 700 kB" "$RAWCLIENT" "$COFFER_SOCKET" \
    --frame 17 --id 7 --field 1:str:conn/big --shutdown --read-timeout 10000
is "... gets the whole reply" "$(replies '^reply op=0x8011 id=7 code=0 msg= value_len=700000$')" 1
is "... and then EOF" "$(tail -n 1 "$T/last.out")" eof
ok "half-closed after 3 pipelined GETs" "$RAWCLIENT" "$COFFER_SOCKET" \
    --frame 17 --id 1 --field 1:str:conn/big --frame 17 --id 2 --field 1:str:conn/big \
    --frame 17 --id 3 --field 1:str:conn/big --shutdown --read-timeout 10000
is "... all 3 are answered, then EOF" "$(replies '^reply op=0x8011 id=[123] code=0 msg= value_len=700000$'):$(tail -n 1 "$T/last.out")" 3:eof
ok "the daemon is alive at the end" kill -0 "$DAEMON_PID"

done_testing
