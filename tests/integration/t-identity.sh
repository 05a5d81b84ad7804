#!/bin/bash
# Who is calling: whoami reports what the kernel says; the interim
# authorization (root, admin group, daemon uid); the daemon refuses unsafe
# state dirs and config files; the client refuses a socket that is not the
# daemon's before sending anything.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'id-value' | "$COFFER" put id/secret 2>/dev/null

# ---- whoami ----
"$COFFER" whoami --json >"$T/who.json" &
coffer_pid=$!
wait $coffer_pid
jq_() { "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(json.dumps(v) if isinstance(v,(list,dict)) or v is None else v)' "$T/who.json" "$1"; }
ok "whoami --json is valid JSON" "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/who.json"
is "uid is mine" "$(jq_ uid)" "$(id -u)"
is "gid is mine" "$(jq_ gid)" "$(id -g)"
is "user is my name" "$(jq_ user)" "$(id -un)"
# id -G lists the primary gid too; the kernel's supplementary list need not.
ok "groups and gid cover every group of \`id -G\`" "$PY" -c '
import json,sys; j=json.load(open(sys.argv[1])); got=set(j["groups"]) | {j["gid"]}; want={int(g) for g in sys.argv[2].split()}
sys.exit(0 if want <= got else "missing %s" % sorted(want-got))' "$T/who.json" "$(id -G)"
is "pid is the coffer process itself" "$(jq_ pid)" "$coffer_pid"
ok "pid is not this shell's" test "$(jq_ pid)" != "$$" -a "$(jq_ pid)" != "$BASHPID"
ok "exe is the coffer CLI (coffer or lt-coffer)" sh -c 'case "$1" in */coffer|*/lt-coffer) exit 0;; esac; exit 1' _ "$(jq_ exe)"
ok "the process was pinned by a pidfd" sh -c 'case "$1" in SO_PEERPIDFD|pidfd_open) exit 0;; esac; exit 1' _ "$(jq_ pinned_by)"
sid=$(cat /proc/self/sessionid 2>/dev/null || echo 4294967295)
[ "$sid" = 4294967295 ] && sid=null
is "audit_session is the kernel's /proc/PID/sessionid" "$(jq_ audit_session)" "$sid"
ok_out "whoami text output shows uid and pid" "^user: +$(id -un) \\(uid $(id -u), gid $(id -g)\\)" "$COFFER" whoami

# ---- unsafe state dir and config ----
try_start() { timeout 10 "$COFFERD" --socket "$T/other.sock" --audit-log "$T/other.log" "$@"; }
mkdir -m 0777 "$T/state-777"; chmod 0777 "$T/state-777"
fails_with "a world-writable state dir is refused, naming the dir" 1 "refusing state directory: $T/state-777 is writable by group or others" \
    try_start --state-dir "$T/state-777"
mkdir "$T/state-770"; chmod 0770 "$T/state-770"
fails_with "a group-writable state dir is refused, naming the dir" 1 "$T/state-770 is writable by group or others" \
    try_start --state-dir "$T/state-770"
mkdir "$T/state-755"; chmod 0755 "$T/state-755"
fails_with "a state dir others may list (0755) is refused, saying chmod 0700" 1 \
    "refusing state directory: $T/state-755 is open to group or others \\(mode 0755\\); it must be 0700: run chmod 0700 $T/state-755" \
    try_start --state-dir "$T/state-755"
mkdir "$T/state-750"; chmod 0750 "$T/state-750"
fails_with "a state dir its group may list (0750) is refused" 1 "$T/state-750 is open to group or others \\(mode 0750\\)" \
    try_start --state-dir "$T/state-750"
printf 'idle_timeout = 30\n' >"$T/ww.conf"; chmod 0666 "$T/ww.conf"
fails_with "a world-writable config file is refused, naming the file" 1 "bad configuration: $T/ww.conf is writable by group or others" \
    try_start --state-dir "$T/state-ok" --config "$T/ww.conf"
printf 'idle_timeout = 30\n' >"$T/ok.conf"; chmod 0600 "$T/ok.conf"
printf 'no_such_key = 1\n' >"$T/bad.conf"; chmod 0600 "$T/bad.conf"
fails_with "a config with an unknown key is refused, naming file and line" 1 "$T/bad.conf:1: unknown key 'no_such_key'" \
    try_start --state-dir "$T/state-ok" --config "$T/bad.conf"
fails_with "a missing --config file is refused" 1 "$T/missing.conf" try_start --state-dir "$T/state-ok" --config "$T/missing.conf"
[ -e "$T/other.sock" ] && note "a refused daemon left its socket behind"

if [ "$(id -u)" != 0 ]; then
    skip "root-only: state dir owned by another user" "needs root"
    skip "root-only: config owned by another user" "needs root"
    skip "root-only: non-admin users are refused" "needs root"
    skip "root-only: admin group members are allowed" "needs root"
    skip "root-only: impostor sockets are refused" "needs root"
    done_testing
    exit
fi

mkdir -m 0700 "$T/state-nobody"; chown nobody "$T/state-nobody"
fails_with "a state dir owned by another user is refused" 1 "$T/state-nobody is owned by uid 65534" \
    try_start --state-dir "$T/state-nobody"
cp "$T/ok.conf" "$T/nobody.conf"; chown nobody "$T/nobody.conf"
fails_with "a config owned by another user is refused" 1 "$T/nobody.conf is owned by uid 65534" \
    try_start --state-dir "$T/state-ok" --config "$T/nobody.conf"

# ---- interim authorization ----
ok_out "nobody may ask status" '"initialized":true' as_nobody "$COFFER" status --json
ok_out "nobody may ask whoami, and is seen as uid 65534" '"uid":65534' as_nobody "$COFFER" whoami --json
ok_out "whoami reports exactly the supplementary groups the kernel has (4,24,100)" '"gid":65534,.*"groups":\[4,24,100\]' \
    setpriv --reuid=nobody --regid=nogroup --groups=4,24,100 "$COFFER" whoami --json
fails_with "nobody's get is denied (exit 5), saying how to find out why" 5 \
    'permission denied: read on secret:id/secret is not allowed; run `coffer policy explain read secret:id/secret`' \
    as_nobody "$COFFER" get id/secret
fails_with "nobody's put is denied (exit 5)" 5 'permission denied' sh -c 'printf x | "$@"' _ \
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFER" put id/nobody
ok "nobody's ls lists nothing: no rule lets nobody list any name" sh -c '[ -z "$("$@")" ]' _ as_nobody "$COFFER" ls
fails_with "nobody cannot seal the store (exit 5)" 5 'permission denied' as_nobody "$COFFER" operator seal
fails_with "the denied put stored nothing" 6 'no such secret' "$COFFER" get id/nobody

# A user whose supplementary group is the admin group, given rights by a
# policy rule. Policy resolves group names at load, so create it first.
made_group=
user=cofft$$
if ! getent group coffer-admin >/dev/null; then
    groupadd coffer-admin && made_group=1
fi
useradd -M -N -g nogroup -G coffer-admin -s /usr/sbin/nologin "$user"
CLEANUP_EXTRA="userdel $user 2>/dev/null; [ -n \"$made_group\" ] && groupdel coffer-admin 2>/dev/null"
printf 'allow * * group:coffer-admin\n' >"$POLICY_DIR/10-admin.policy"
ok_out "policy reload picks up the admin-group rule" '^policy reloaded: 2 rules$' "$COFFER" policy reload
as_admin() { setpriv --reuid="$user" --regid=nogroup --init-groups "$@"; }
ok_out "a member of coffer-admin may get" '^id-value$' as_admin "$COFFER" get id/secret
ok "a member of coffer-admin may put" sh -c 'printf member | "$@"' _ \
    setpriv --reuid="$user" --regid=nogroup --init-groups "$COFFER" put id/member
ok_out "... and the value is there" '^member$' "$COFFER" get id/member
ok_out "coffer-admin as the primary group is enough" '^id-value$' \
    setpriv --reuid=nobody --regid=coffer-admin --clear-groups "$COFFER" get id/secret

# ---- impostor sockets: the client refuses before sending ----
mkdir -m 0755 "$T/evil"; chown nobody "$T/evil"
cat >"$T/impostor.py" <<'EOF'
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
open(path + ".ready", "w").close()
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        data = c.recv(65536)
    except OSError:
        data = b""
    with open(log, "a") as f:
        f.write("connection %d bytes\n" % len(data))
    c.close()
EOF
# setpriv execs python, so $! is the impostor itself.
setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" "$T/impostor.py" "$T/evil/coffer.sock" "$T/evil/log" \
    </dev/null >/dev/null 2>&1 &
imp=$!
CLEANUP_EXTRA="kill $imp 2>/dev/null; $CLEANUP_EXTRA"
wait_until 5 test -e "$T/evil/coffer.sock.ready"
fails_with "a socket owned by another user is refused (exit 3, 'owned by')" 3 'owned by uid 65534' \
    env COFFER_SOCKET="$T/evil/coffer.sock" "$COFFER" get id/secret
is "the impostor got no connection at all" "$(cat "$T/evil/log" 2>/dev/null)" ""
chown root "$T/evil/coffer.sock"
fails_with "a root-owned socket served by another user is refused (exit 3)" 3 'listening process is not root' \
    env COFFER_SOCKET="$T/evil/coffer.sock" "$COFFER" get id/secret
wait_until 5 test -s "$T/evil/log"
is "the impostor received not one byte" "$(cat "$T/evil/log" 2>/dev/null)" "connection 0 bytes"
kill "$imp" 2>/dev/null; wait "$imp" 2>/dev/null

# ---- the pidfd_open fallback (kernels before 6.5) and a reused PID ----
# COFFERD_PEER_PIN=pidfd_open makes cofferd use the fallback here too. A
# process of nobody connects while the daemon is stopped and exits, leaving
# the connection to its child; a root process is then given its PID
# (ns_last_pid) before the daemon accepts. The daemon must not take the root
# process for the caller: it started before the accept, but it is not nobody.
stop_daemon
COFFERD_PEER_PIN=pidfd_open start_daemon || { echo "Bail out! cofferd did not restart"; exit 1; }
"$COFFER" whoami --json >"$T/who.json"
is "COFFERD_PEER_PIN=pidfd_open: the caller is pinned by pidfd_open" "$(jq_ pinned_by)" pidfd_open
cat >"$T/reuse.py" <<'EOF'
import os, socket, struct, sys, time
path, out, go = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
if os.fork():
    open(out + ".pid", "w").write("%d\n" % os.getpid())
    os._exit(0)   # the process SO_PEERCRED names is gone
end = time.time() + 60
while not os.path.exists(go):
    if time.time() > end:
        os._exit(1)   # never outlive the test
    time.sleep(0.02)
s.sendall(struct.pack(">IHHII", 0x434f4652, 1, 32, 7, 0))   # WHOAMI
s.settimeout(10)
data = b""
try:
    while len(data) < 16 or len(data) < 16 + struct.unpack(">I", data[12:16])[0]:
        b = s.recv(65536)
        if not b:
            break
        data += b
except OSError:
    pass
open(out, "wb").write(data)
EOF
reuse_skip() {
    skip "a reused PID held by another user's process is not taken for the caller" "$1"
}
if [ -w /proc/sys/kernel/ns_last_pid ]; then
    kill -STOP "$DAEMON_PID"
    mkdir -m 0777 "$T/reuse"
    # Its stdio is not the test's: a stray child must not hold TAP's pipe.
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" "$T/reuse.py" "$COFFER_SOCKET" "$T/reuse/out" \
        "$T/reuse/go" </dev/null >/dev/null 2>&1 &
    wait $!   # reaped: its PID is free
    P=$(cat "$T/reuse/out.pid" 2>/dev/null)
    SP=
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -n "$P" ] || break
        echo $((P - 1)) >/proc/sys/kernel/ns_last_pid
        sleep 60 &
        SP=$!
        [ "$SP" = "$P" ] && break
        # SIGKILL: just forked, it may still be a copy of this shell, whose
        # TERM trap would run the test's cleanup.
        kill -KILL "$SP"; wait "$SP" 2>/dev/null; SP=
    done
    kill -CONT "$DAEMON_PID"
    "$COFFER" status >/dev/null   # served after the pending connection was accepted
    touch "$T/reuse/go"
    if [ -n "$SP" ]; then
        wait_until 10 test -e "$T/reuse/out"
        ok "a reused PID held by another user's process is not taken for the caller" \
            grep -q "could not be identified" "$T/reuse/out"
        kill -KILL "$SP"; wait "$SP" 2>/dev/null
    else
        reuse_skip "could not give PID ${P:-?} to another process"
    fi
else
    reuse_skip "no writable /proc/sys/kernel/ns_last_pid"
fi

done_testing
