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
ok "the daemon is alive after pipelining" kill -0 "$DAEMON_PID"

# ---- connection limits count subordinate uids as their owner ----
if [ "$(id -u)" != 0 ]; then
    for d in "subuids share their owner's cap" "the subuid file" "root's reserved connections"; do skip "$d" "needs root"; done
    done_testing
    exit
fi
BG=
CLEANUP_EXTRA='[ -n "$BG" ] && kill $BG 2>/dev/null; wait 2>/dev/null'
CONF="$T/cofferd.conf"
reload() {   # reload CONFIG-TEXT: rewrite the config and SIGHUP, wait for the log line
    local mark
    printf '%s\n' "$1" >"$CONF"
    mark=$(log_mark)
    kill -HUP "$DAEMON_PID"
    wait_until 5 log_has "$mark" 'configuration reloaded'
}
: >"$CONF"; chmod 0600 "$CONF"
# nobody may read conn/big, for the unread replies below.
printf 'allow read secret:conn/* uid:%s\n' "$(id -u nobody)" >"$POLICY_DIR/20-conn.policy"
chmod 0644 "$POLICY_DIR/20-conn.policy"
stop_daemon
start_daemon --config "$CONF" && unseal_keyfile || { echo "Bail out! cofferd did not restart"; exit 1; }

# A rootless container as nobody makes it: nobody's own uid is root inside,
# 1000 subordinate uids (200000..200999 outside) are 1..1000. The map is
# written by root as newuidmap(1) would from /etc/subuid.
NOBODY=$(id -u nobody)
in_userns() {   # in_userns OUT COMMAND...: run COMMAND in a new user namespace of nobody's, in the background
    local out=$1; shift
    setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -U sh -c \
        'until grep -q 200000 /proc/self/uid_map; do sleep 0.05; done; exec "$@"' _ "$@" >"$out" 2>&1 &
    BG=$!
    wait_until 5 sh -c '[ "$(readlink "/proc/$1/ns/user")" != "$(readlink /proc/self/ns/user)" ]' _ "$BG" &&
        env printf '0 %s 1\n1 200000 1000\n' "$NOBODY" >"/proc/$BG/uid_map" &&   # one write(), as the kernel wants
        printf '0 %s 1\n' "$(id -g nobody)" >"/proc/$BG/gid_map"
}
hold_subuids() {   # hold_subuids N SECONDS: N connections from N subordinate uids
    in_userns "$T/holder.out" "$CROWD" "$COFFER_SOCKET" --idle "$1" --garbage 0 --seconds "$2" --euid-base 1
}
probe() {   # probe OUT RAWCLIENT-PREFIX...: a STATUS request, its answer in OUT
    local out=$1; shift
    "$@" "$RAWCLIENT" "$COFFER_SOCKET" --read-timeout 1000 >"$out" 2>&1
}
as_subuid() { nsenter --user --target "$BG" setpriv --reuid=999 --regid=0 --clear-groups "$@"; }
stop_bg() { kill "$BG" 2>/dev/null; wait "$BG" 2>/dev/null; BG=; }

if ! setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -U true 2>/dev/null; then
    skip "subuids share their owner's cap" "unprivileged user namespaces are off here"
else
    reload 'max_connections_per_uid = 50'
    hold_subuids 200 6
    wait_until 10 grep -q 'idle connections open' "$T/holder.out"
    ok "200 connections from 200 subordinate uids of nobody are opened" grep -q 'idle connections open' "$T/holder.out"
    probe "$T/probe.out" as_subuid
    ok "with max_connections_per_uid = 50, one more from another subordinate uid is refused" \
        grep -q 'too many connections from your uid with its subordinate uids' "$T/probe.out"
    probe "$T/probe.out" as_subuid unshare -U
    ok "... and so is one from a user namespace nested in it" \
        grep -q 'too many connections from your uid with its subordinate uids' "$T/probe.out"
    probe "$T/probe.out" as_nobody
    ok "... and so is one from nobody itself, outside the namespace" \
        grep -q 'too many connections from your uid' "$T/probe.out"
    ok_out "meanwhile root is served" '"initialized":true' "$COFFER" status --json
    ok_out "and another uid (uid 1) is served" '"initialized":true' \
        setpriv --reuid=1 --regid=1 --clear-groups "$COFFER" status --json
    stop_bg
    note "holder: $(tr "\n" " " <"$T/holder.out")"

    reload "$(printf 'max_connections = 100\nroot_reserved_connections = 10\nmax_connections_per_uid = 1000')"
    hold_subuids 200 6
    wait_until 10 grep -q 'idle connections open' "$T/holder.out"
    probe "$T/probe.out" as_nobody
    ok "when the subordinate uids hold all but the 10 reserved of 100 connections, others are refused" \
        grep -q 'too many connections to cofferd' "$T/probe.out"
    ok_out "... while root (pam_coffer) is still served" '"initialized":true' "$COFFER" status --json
    stop_bg
fi

# Without a namespace to ask (the caller is gone, or a setuid helper ran as
# a subordinate uid), the ranges of subuid_file say who the owner is.
printf 'nobody:300000:1000\n' >"$T/subuid"; chmod 0644 "$T/subuid"
reload "$(printf 'max_connections_per_uid = 50\nsubuid_file = %s' "$T/subuid")"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$CROWD" "$COFFER_SOCKET" --idle 50 --garbage 0 --seconds 4 \
    >"$T/holder.out" 2>&1 &
BG=$!
wait_until 5 grep -q 'idle connections open' "$T/holder.out"
probe "$T/probe.out" setpriv --reuid=300007 --regid=300007 --clear-groups
ok "uid 300007, in nobody's range in subuid_file, shares nobody's cap" \
    grep -q 'too many connections from your uid with its subordinate uids' "$T/probe.out"
probe "$T/probe.out" setpriv --reuid=301007 --regid=301007 --clear-groups
ok "uid 301007, outside the range, is not refused" sh -c '! grep -q "too many" "$1"' _ "$T/probe.out"
stop_bg

# ---- buffer memory one uid may pin ----
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DAEMON_PID/status"; }
# AddressSanitizer keeps freed memory resident (its quarantine): allow for it.
RSS_MAX_MIB=24
ldd "$COFFERD" 2>/dev/null | grep -q libasan && RSS_MAX_MIB=64
reload 'max_buffered_per_uid = 8'
rss0=$(rss_kib)
setpriv --reuid=nobody --regid=nogroup --clear-groups "$CROWD" "$COFFER_SOCKET" --idle 0 --garbage 0 --seconds 6 \
    --partial 100 >"$T/partial.out" 2>&1 &
BG=$!
wait_until 5 grep -q 'partial frames started' "$T/partial.out"
sleep 3
rss1=$(rss_kib)
note "daemon RSS ${rss0} kB before, ${rss1} kB with 100 nearly complete 1 MiB frames from nobody"
ok "100 nearly complete 1 MiB frames from one uid pin about max_buffered_per_uid = 8 MiB: RSS grew $(( (rss1 - rss0) / 1024 )) MiB (< $RSS_MAX_MIB)" \
    test $(( rss1 - rss0 )) -lt $(( RSS_MAX_MIB * 1024 ))
ok_out "meanwhile root is served" '"initialized":true' "$COFFER" status --json
ok_out "and another uid (uid 1) is served" '"initialized":true' \
    setpriv --reuid=1 --regid=1 --clear-groups "$COFFER" status --json
wait "$BG"
BG=
note "partial: $(tr "\n" " " <"$T/partial.out")"
# A fresh daemon: freed heap from the frames above would hide new growth.
stop_daemon
start_daemon --config "$CONF" && unseal_keyfile || { echo "Bail out! cofferd did not restart"; exit 1; }
rss0=$(rss_kib)
setpriv --reuid=nobody --regid=nogroup --clear-groups "$CROWD" "$COFFER_SOCKET" --idle 0 --garbage 0 --seconds 6 \
    --unread 100 --unread-get conn/big >"$T/unread.out" 2>&1 &
BG=$!
wait_until 5 grep -q 'unread requests sent' "$T/unread.out"
sleep 3
rss1=$(rss_kib)
note "daemon RSS ${rss0} kB before, ${rss1} kB with 100 unread 700 kB replies for nobody"
ok "100 GETs of 700 kB whose replies nobody reads pin about max_buffered_per_uid: RSS grew $(( (rss1 - rss0) / 1024 )) MiB (< $RSS_MAX_MIB)" \
    test $(( rss1 - rss0 )) -lt $(( RSS_MAX_MIB * 1024 ))
ok_out "meanwhile root is served" '"initialized":true' "$COFFER" status --json
wait "$BG"
BG=
note "unread: $(tr "\n" " " <"$T/unread.out")"
ok "nobody is served again once those connections are gone" \
    wait_until 5 sh -c 'setpriv --reuid=nobody --regid=nogroup --clear-groups "$1" status >/dev/null' _ "$COFFER"
ok "the daemon is alive at the end" kill -0 "$DAEMON_PID"

done_testing
