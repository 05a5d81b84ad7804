#!/bin/bash
# Hostile bytes on the socket, crafted with rawclient: truncated, garbage,
# oversized and malformed frames, unknown opcodes and versions. Malformed
# frames get an error reply and a closed connection; well-formed but wrong
# requests get an error reply on a connection that stays usable. Afterwards
# the daemon still serves a normal client.
. "$(dirname "$0")/lib.sh"

# Linux errno values carried in T_ERR_CODE.
E2BIG=7 EINVAL=22 EPROTO=71 EOPNOTSUPP=95

raw_is() {   # raw_is DESCRIPTION ERE RAWCLIENT-ARGS...  (whole output, lines joined by '|', matches ERE)
    local d=$1 pat=$2; shift 2
    local out
    out=$("$RAWCLIENT" "$COFFER_SOCKET" "$@" 2>"$T/last.err" | tr '\n' '|')
    TAP_N=$((TAP_N + 1))
    if printf '%s' "$out" | grep -qE -- "$pat"; then
        echo "ok $TAP_N - $d"
    else
        echo "not ok $TAP_N - $d"
        echo "#   got:  $out" | cut -c1-400
        echo "#   want: /$pat/"
        sed 's/^/#   /' "$T/last.err" | head -5
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}
closed_with() { echo "reply op=0xffff id=[0-9]+ code=$1 msg=[^|]*$2[^|]*\|eof\|\$"; }   # error reply, then EOF
STATUS_OK='reply op=0x8001 id=[0-9]+ code=0 msg=\|'

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'p-one' | "$COFFER" put p/one 2>/dev/null
# Who serves the socket, from the kernel, not from our own variable: the pid
# holding the listening socket bound to the path, and that process's start time.
serving() {
    local ino pid fd
    ino=$(awk -v s="$COFFER_SOCKET" '$NF == s && $4 == "00010000" { print $7 }' /proc/net/unix)
    [ -n "$ino" ] || return 1
    for fd in /proc/[0-9]*/fd/*; do
        [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$ino]" ] || continue
        pid=${fd#/proc/}; pid=${pid%%/*}
        echo "$pid $(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)"
        return 0
    done
    return 1
}
SERVER0=$(serving)
[ "${SERVER0%% *}" = "$DAEMON_PID" ] || { echo "Bail out! the socket is not served by cofferd ($SERVER0)"; exit 1; }

# ---- framing ----
raw_is "a truncated header then EOF: the daemon just closes" '^sent=8\|eof\|$' \
    --hex 434f465200010001 --shutdown
raw_is "a header announcing a body that never comes, then EOF: closed, no reply" '^sent=16\|eof\|$' \
    --frame 1 --body-len 100 --shutdown
raw_is "garbage bytes (bad magic): error reply, then the connection is closed" "$(closed_with $EPROTO 'bad magic')" \
    --hex deadbeefdeadbeefdeadbeefdeadbeef
head -c 4096 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/garbage.hex"
raw_is "4 KiB of random bytes: error reply, then closed" "$(closed_with $EPROTO 'bad magic')" \
    --hex "$(cat "$T/garbage.hex")"
t0=$(date +%s%N)
raw_is "a header with body length 4 GiB - 1: error reply, then closed" "$(closed_with $EPROTO 'larger than')" \
    --frame 16 --body-len 4294967295 --read-timeout 5000
t1=$(date +%s%N)
ok "... answered at once, without waiting for the body (<1 s)" test $(( (t1 - t0) / 1000000 )) -lt 1000
raw_is "a header with body length cap + 1 (1 MiB + 64 KiB + 1) is refused the same way" \
    "$(closed_with $EPROTO 'larger than')" --frame 16 --body-len $((1048576 + 65536 + 1)) --read-timeout 5000
raw_is "protocol version 2: error reply, then closed" "$(closed_with $EPROTO 'unsupported protocol version')" \
    --frame 1 --proto-version 2
raw_is "protocol version 0: error reply, then closed" "$(closed_with $EPROTO 'unsupported protocol version')" \
    --frame 1 --proto-version 0

# ---- opcodes ----
raw_is "an unknown opcode gets an error reply; a STATUS on the same connection is then answered" \
    "^sent=32\|reply op=0xffff id=5 code=$EOPNOTSUPP msg=unknown opcode 30583[^|]*\|reply op=0x8001 id=6 code=0 msg=\|open\|\$" \
    --frame 0x7777 --id 5 --frame 1 --id 6 --replies 2
raw_is "a reply opcode sent as a request is an unknown opcode, connection kept" \
    "code=$EOPNOTSUPP msg=unknown opcode[^|]*\|${STATUS_OK}open" --frame 0x8001 --frame 1 --replies 2
raw_is "the request id is echoed" '^sent=16\|reply op=0x8001 id=4242 code=0' --frame 1 --id 4242 --replies 1
raw_is "three pipelined frames in one write get three replies in order" \
    'reply op=0x8001 id=1 [^|]*\|reply op=0x8020 id=2 [^|]*\|reply op=0x8001 id=3 [^|]*\|open' \
    --frame 1 --id 1 --frame 32 --id 2 --frame 1 --id 3 --replies 3
raw_is "a frame trickled one byte at a time is reassembled and answered" \
    '^sent=16\|reply op=0x8001 id=7 code=0' --frame 1 --id 7 --trickle 5 --replies 1

# ---- malformed bodies: error reply, then closed ----
BODY=$(closed_with $EPROTO 'malformed frame body')
raw_is "trailing bytes after the last field" "$BODY" --frame 17 --field 1:str:p/one --raw 0102
raw_is "a duplicate tag" "$BODY" --frame 17 --field 1:str:p/one --field 1:str:p/one
raw_is "a string with an embedded NUL" "$BODY" --frame 17 --field 1:strhex:700031
raw_is "a string with invalid UTF-8 (c3 28)" "$BODY" --frame 17 --field 1:strhex:70c328
raw_is "a string with an overlong UTF-8 '/' (c0 af)" "$BODY" --frame 17 --field 1:strhex:70c0af
raw_is "a string with a UTF-16 surrogate (ed a0 80)" "$BODY" --frame 17 --field 1:strhex:70eda080
raw_is "a u64 field of length 7" "$BODY" --frame 17 --field 1:str:p/one --field 3:t1:00000000000001
raw_is "a u64 field of length 9" "$BODY" --frame 17 --field 1:str:p/one --field 3:t1:000000000000000001
raw_is "an unknown field type (9)" "$BODY" --frame 17 --field 1:t9:00
raw_is "field tag 0" "$BODY" --frame 17 --field 0:str:p/one
raw_is "field tag 128 (past the last tag)" "$BODY" --frame 17 --field 128:str:p/one
raw_is "a field length past the end of the body" "$BODY" --frame 17 --raw 0102000000ff70
raw_is "a string field longer than 4096 bytes" "$BODY" --frame 17 --field 1:str:"$(printf 'a%.0s' $(seq 4097))"

# ---- well-formed but wrong requests: error reply, connection kept ----
raw_is "a name sent as u64: error reply naming the field, connection kept" \
    "code=$EINVAL msg=invalid secret name[^|]*\|${STATUS_OK}open" \
    --frame 17 --field 1:u64:5 --frame 1 --replies 2
raw_is "a name with '..': refused with the charset, connection kept" \
    "code=$EINVAL msg=invalid secret name: use 1-256 characters of A-Z a-z 0-9[^|]*\|${STATUS_OK}open" \
    --frame 17 --field 1:str:../x --frame 1 --replies 2
raw_is "a get without a name: error reply, connection kept" \
    "code=$EINVAL msg=secret name is missing[^|]*\|${STATUS_OK}open" --frame 17 --frame 1 --replies 2
raw_is "a put with a 1 MiB + 1 value: refused (E2BIG), connection kept" \
    "code=$E2BIG msg=value is larger than 1 MiB[^|]*\|${STATUS_OK}open" \
    --frame 16 --field 1:str:p/big --field 2:fill:1048577 --frame 1 --replies 2
fails_with "... and nothing was stored under that name (exit 6)" 6 'no such secret' "$COFFER" get p/big
raw_is "a put with exactly 1 MiB is accepted" 'reply op=0x8010 id=1 code=0 msg=\|open' \
    --frame 16 --field 1:str:p/max --field 2:fill:1048576 --replies 1
raw_is "the 1 MiB value is served back whole" 'reply op=0x8011 id=1 code=0 msg= value_len=1048576\|open' \
    --frame 17 --field 1:str:p/max --replies 1
raw_is "a put whose value is a string, not bytes: refused, connection kept" \
    "code=$EINVAL msg=value must be a bytes field[^|]*\|open" --frame 16 --field 1:str:p/str --field 2:str:abc --replies 1

# ---- the daemon survived all of it ----
is "the socket is still served by the same daemon process (pid and start time)" "$(serving)" "$SERVER0"
ok "the daemon process is alive" kill -0 "$DAEMON_PID"
ok_out "a normal client is still served" '^p-one$' "$COFFER" get p/one
ok_out "status still answers" '"sealed":false' "$COFFER" status --json

done_testing
