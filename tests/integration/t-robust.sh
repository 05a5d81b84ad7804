#!/bin/bash
# Robustness: SIGKILL in the middle of writes, a full disk, a read-only state
# dir, SIGHUP reloads, SIGTERM, and a daemon that is not running.
. "$(dirname "$0")/lib.sh"

value_is() { local want=$1; shift; [ "$("$COFFER" get "$@")" = "$want" ]; }   # value_is VALUE NAME [--version N]
put() { printf '%s' "$2" | "$COFFER" put "$1" "${@:3}"; }
BG_PIDS=
CLEANUP_EXTRA='for p in $BG_PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null; for m in $MOUNTS; do umount -l $m 2>/dev/null; done; for l in $LOOPS; do losetup -d $l 2>/dev/null; done'
MOUNTS= LOOPS=

# ---- SIGKILL in the middle of writes ----
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }

writer() {   # writer ID: put until the daemon is gone; record each acknowledged (name, version, value)
    local i=0 name val out ver
    while :; do
        i=$((i + 1))
        name="crash/w$1/k$((i % 5))"
        val="w$1-i$i-$RANDOM$RANDOM"
        out=$(printf '%s' "$val" | "$COFFER" put "$name" --max-versions 1000 2>&1) || break
        ver=${out##* version }
        echo "$name $ver $val" >>"$T/acked.$1"
    done
}
writer 1 & w1=$!
writer 2 & w2=$!
BG_PIDS="$w1 $w2"
wait_until 10 sh -c '[ "$(cat "$1"/acked.* 2>/dev/null | wc -l)" -ge 40 ]' _ "$T"
kill9_daemon
wait "$w1" "$w2"
BG_PIDS=
cat "$T"/acked.* >"$T/acked"
n_acked=$(wc -l <"$T/acked")
note "$n_acked writes were acknowledged before SIGKILL"
ok "the writers got at least 40 acknowledgements before the kill" test "$n_acked" -ge 40
ok "cofferd restarts on the killed store" start_daemon
ok "and unseals" unseal_keyfile
check_acked() {
    local name ver val bad=0
    while read -r name ver val; do
        got=$("$COFFER" get "$name" --version "$ver" 2>&1) || { echo "$name v$ver: $got" >&2; bad=$((bad + 1)); continue; }
        [ "$got" = "$val" ] || { echo "$name v$ver: wrong value" >&2; bad=$((bad + 1)); }
    done <"$T/acked"
    [ "$bad" -eq 0 ]
}
ok "every acknowledged write reads back with its value, at its version" check_acked
ok "the store takes writes again after the crash" put crash/after ok
ok_out "the audit log verifies after the crash" 'audit log intact' "$COFFER" audit verify

# ---- SIGHUP reloads the configuration; a broken one is rejected whole ----
reset_state
printf 'idle_timeout = 60\n' >"$T/cofferd.conf"; chmod 0600 "$T/cofferd.conf"
start_daemon --config "$T/cofferd.conf" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile
idle_closes_within() {   # idle_closes_within SECONDS: an idle connection is closed by the daemon in time
    local t0 t1 out
    t0=$(date +%s%N)
    out=$("$RAWCLIENT" "$COFFER_SOCKET" --read-timeout 6000)
    t1=$(date +%s%N)
    [ "$out" = eof ] && [ $(( (t1 - t0) / 1000000 )) -le $(( $1 * 1000 )) ]
}
printf 'idle_timeout = 1\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "SIGHUP: the daemon logs the reload" wait_until 5 log_has "$mark" 'configuration reloaded'
ok "the reloaded idle_timeout = 1 applies: an idle connection is closed within 3 s" idle_closes_within 3
printf 'idle_timeout = banana\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "a broken config on SIGHUP is rejected, naming file and line, old one kept" \
    wait_until 5 log_has "$mark" "reload failed, keeping the old configuration and policy: $T/cofferd.conf:1: invalid value for 'idle_timeout'"
ok "the daemon survived the broken reload" kill -0 "$DAEMON_PID"
ok "the old idle_timeout = 1 is still in force" idle_closes_within 3
printf 'idle_timeout = 60\n' >"$T/cofferd.conf"; chmod 0666 "$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "a world-writable config on SIGHUP is rejected" \
    wait_until 5 log_has "$mark" 'reload failed.*writable by group or others'
chmod 0600 "$T/cofferd.conf"
if [ "$(id -u)" = 0 ] && groupadd "cofft-g$$" 2>/dev/null; then
    CLEANUP_EXTRA="groupdel cofft-g$$ 2>/dev/null; $CLEANUP_EXTRA"
    put hup/x hup-value 2>/dev/null
    fails_with "before the reload, a member of group cofft-g$$ is denied" 5 'permission denied' \
        setpriv --reuid=nobody --regid="cofft-g$$" --clear-groups "$COFFER" get hup/x
    printf 'allow read secret:hup/* group:cofft-g%s\n' $$ >"$POLICY_DIR/20-hup.policy"
    mark=$(log_mark)
    kill -HUP "$DAEMON_PID"
    wait_until 5 log_has "$mark" 'policy reloaded: 3 rules'
    ok_out "after SIGHUP with a rule for group cofft-g$$, that group may read" '^hup-value$' \
        setpriv --reuid=nobody --regid="cofft-g$$" --clear-groups "$COFFER" get hup/x
    fails_with "... and others are still denied" 5 'permission denied: read on secret:hup/x' \
        as_nobody "$COFFER" get hup/x
else
    skip "SIGHUP reloads the policy (denied before)" "needs root and groupadd"
    skip "SIGHUP reloads the policy (allowed after)" "needs root and groupadd"
    skip "SIGHUP reloads the policy (others still denied)" "needs root and groupadd"
fi

# ---- SIGTERM, and a daemon that is down ----
pid=$DAEMON_PID
kill -TERM "$pid"
wait "$pid"
is "SIGTERM: cofferd exits 0" "$?" 0
DAEMON_PID=
ok "SIGTERM: the socket is removed" test ! -e "$COFFER_SOCKET"
fails_with "with the daemon down, the client exits 3 and asks whether it is running" 3 'is the daemon running\?' \
    "$COFFER" status
/usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$COFFER_SOCKET"
fails_with "a stale socket with no listener: exit 3, is the daemon running?" 3 'is the daemon running\?' \
    "$COFFER" get hup/x
ok "cofferd starts over a stale socket file" start_daemon --config "$T/cofferd.conf"
ok_out "... and serves on it" '"sealed":true' "$COFFER" status --json
stop_daemon

# ---- root: a full disk and a read-only state dir ----
if [ "$(id -u)" != 0 ]; then
    for d in "full disk" "read-only at start" "read-only while running"; do skip "$d" "needs root"; done
    done_testing
    exit
fi

FS="$T/fs"
mkdir -p "$FS"
if ! mount -t tmpfs -o size=6m,mode=0700 tmpfs "$FS" 2>/dev/null; then
    skip "full disk" "cannot mount a tmpfs here"
else
    MOUNTS="$FS $MOUNTS"
    stop_daemon
    start_daemon --state-dir "$FS/state" || { echo "Bail out! cofferd did not start on tmpfs"; exit 1; }
    init_keyfile
    for i in 1 2 3; do put "full/v$i" "before-$i" 2>/dev/null; done
    head -c 524288 /dev/urandom >"$T/half"
    dd if=/dev/zero of="$FS/fill" bs=64k 2>/dev/null
    dd if=/dev/zero of="$FS/fill2" bs=1k 2>/dev/null
    fails_with "disk full: put fails with a clear message (exit 1)" 1 'disk is full' \
        "$COFFER" put full/big --file "$T/half"
    ok "disk full: earlier values still read" value_is before-2 full/v2
    fails_with "disk full: the refused value does not exist" 6 'no such secret' "$COFFER" get full/big
    rm -f "$FS/fill" "$FS/fill2"
    ok "space freed: puts work again" "$COFFER" put full/big --file "$T/half"
    ok "space freed: the big value reads back whole" sh -c '"$1" get full/big | cmp - "$2"' _ "$COFFER" "$T/half"
    stop_daemon
    start_daemon --state-dir "$FS/state" && unseal_keyfile
    ok "after a restart every value is intact" sh -c \
        'for i in 1 2 3; do [ "$("$1" get full/v$i)" = before-$i ] || exit 1; done; "$1" get full/big | cmp - "$2"' \
        _ "$COFFER" "$T/half"
    stop_daemon
    # remount,ro is refused while SQLite holds the database open for writing,
    # so this checks a state dir that is read-only when cofferd starts.
    if mount -o remount,ro "$FS"; then
        fails_with "a read-only state dir at start: cofferd refuses, saying read-only" 1 '[Rr]ead-only' \
            timeout 10 "$COFFERD" --state-dir "$FS/state" --socket "$COFFER_SOCKET" --audit-log "$T/audit.log"
        mount -o remount,rw "$FS"
    else
        skip "read-only at start" "remount,ro failed"
    fi
fi

# A disk that turns read-only under a running daemon: ext4 mounted with
# errors=remount-ro, then an error injected through sysfs -- what the kernel
# does when a disk fails. (A plain remount,ro is refused with EBUSY while
# files are open for writing.)
IMG="$T/ext4.img"
EXT="$T/ext4"
mkdir -p "$EXT"
if truncate -s 32M "$IMG" && mkfs.ext4 -q -F "$IMG" 2>/dev/null && loop=$(losetup -f --show "$IMG" 2>/dev/null) &&
   LOOPS=$loop && mount -o errors=remount-ro "$loop" "$EXT" 2>/dev/null && MOUNTS="$EXT $MOUNTS" &&
   [ -w "/sys/fs/ext4/${loop#/dev/}/trigger_fs_error" ]; then
    chmod 0700 "$EXT"
    start_daemon --state-dir "$EXT/state" || { echo "Bail out! cofferd did not start on ext4"; exit 1; }
    init_keyfile
    for i in 1 2 3; do put "ro/v$i" "ro-before-$i" 2>/dev/null; done
    echo 1 >"/sys/fs/ext4/${loop#/dev/}/trigger_fs_error"
    fails_with "the state dir's filesystem now refuses writes" 1 'Read-only file system' touch "$EXT/state/probe"
    fails_with "read-only: put fails, saying read-only (exit 1)" 1 'read-only' put ro/new nope
    ok "read-only: gets still work" value_is ro-before-3 ro/v3
    ok "read-only: ls still works" sh -c '[ "$("$1" ls ro/ | wc -l)" = 3 ]' _ "$COFFER"
    stop_daemon
    umount "$EXT" && MOUNTS=${MOUNTS/$EXT /}
    mount "$loop" "$EXT" && MOUNTS="$EXT $MOUNTS"
    start_daemon --state-dir "$EXT/state" && unseal_keyfile
    ok "remounted read-write: every value is intact" sh -c \
        'for i in 1 2 3; do [ "$("$1" get ro/v$i)" = ro-before-$i ] || exit 1; done' _ "$COFFER"
    fails_with "remounted read-write: the refused put left nothing" 6 'no such secret' "$COFFER" get ro/new
    ok "remounted read-write: puts work" put ro/new yes
    stop_daemon
else
    skip "read-only while running" "no loop device, ext4 or /sys/fs/ext4 trigger_fs_error here"
fi

done_testing
