#!/bin/bash
# The systemd integration in dist/: cofferd.service (made from
# cofferd.service.in), cofferd.socket, cofferd-creds.socket,
# run-coffer-sessions.mount, sysusers.d and tmpfiles.d.
#  - systemd-analyze verify finds nothing wrong with the units;
#  - systemd-analyze security rates the service's exposure at 2.0 or less (a
#    property of the unit file, not a measurement);
#  - the unit grants exactly the capabilities daemon/main.c keeps, and the
#    socket units match the socket paths and fd names cofferd expects;
#  - sysusers.d and tmpfiles.d make what the units expect (in a scratch root);
#  - cofferd does its work inside the unit's sandbox, as far as that can be
#    built without systemd as PID 1: started the way the socket units start it
#    (two fds named by FileDescriptorName=), as an unprivileged user holding
#    only the unit's ambient capabilities and no new privileges, in private
#    mount and network namespaces where the clients' binaries are hidden
#    (ProtectHome=, PrivateNetwork=). Under strace, every system call it makes
#    must be one the unit's SystemCallFilter= allows. The unit itself, seccomp
#    filter and all, runs under a real systemd in the nspawn-booted end-to-end
#    test.
. "$(dirname "$0")/lib.sh"
command -v systemd-analyze >/dev/null || skip_all "systemd-analyze not installed"

SRC=$top_srcdir/dist
U=$T/units
mkdir -p "$U"
# ExecStart= must name a file that exists: the cofferd of this build.
sed "s|@sbindir@|$top_builddir|g" "$SRC/systemd/cofferd.service.in" >"$U/cofferd.service"
cp "$SRC/systemd/cofferd.socket" "$SRC/systemd/cofferd-creds.socket" "$SRC/systemd/run-coffer-sessions.mount" "$U/"
SERVICE=$U/cofferd.service
MOUNT=$U/run-coffer-sessions.mount

# unit_value KEY FILE: every value KEY= is given in FILE, space-separated.
unit_value() { sed -n "s/^$1=//p" "$2" | tr '\n' ' ' | sed 's/ *$//'; }
words_sorted() { tr -s ' ,' '\n\n' | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ *$//'; }

# ---- systemd-analyze verify ----
# --man=no: Documentation= names man pages that are installed only by `make install`.
systemd-analyze verify --man=no "$SERVICE" "$U/cofferd.socket" "$U/cofferd-creds.socket" "$MOUNT" \
    >"$T/verify.out" 2>&1
rc=$?
sed 's/^/#   verify: /' "$T/verify.out"
is "systemd-analyze verify accepts the four units" "$rc" 0
is "systemd-analyze verify has nothing to say about them" "$(cat "$T/verify.out")" ""

# ---- systemd-analyze security ----
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    systemd-analyze security --offline=yes --no-pager "$SERVICE" >"$T/security.out" 2>&1
    exposure=$(sed -n 's/.*Overall exposure level for cofferd\.service: \([0-9.]*\).*/\1/p' "$T/security.out")
    echo "# systemd-analyze security exposure: ${exposure:-?}"
    grep '✗' "$T/security.out" | awk '{printf "#   %s %s\n", $2, $NF}'
    ok "systemd-analyze security gives an overall exposure figure" test -n "$exposure"
    ok "the overall exposure is at most 2.0" awk -v x="${exposure:-99}" 'BEGIN { exit !(x + 0 <= 2.0) }'
else
    skip "systemd-analyze security gives an overall exposure figure" "no --offline (systemd < 252)"
    skip "the overall exposure is at most 2.0" "no --offline (systemd < 252)"
fi

# ---- what the unit grants is what cofferd keeps ----
keep=$(sed -n 's/.*cap_value_t keep\[\] = {\(.*\)};.*/\1/p' "$top_srcdir/daemon/main.c" | words_sorted)
ok "daemon/main.c's list of kept capabilities was found" test -n "$keep"
is "AmbientCapabilities= is exactly what main.c keeps" "$(unit_value AmbientCapabilities "$SERVICE" | words_sorted)" "$keep"
is "CapabilityBoundingSet= is exactly what main.c keeps" \
    "$(unit_value CapabilityBoundingSet "$SERVICE" | words_sorted)" "$keep"
is "NoNewPrivileges=yes" "$(unit_value NoNewPrivileges "$SERVICE")" yes
is "no core dumps (LimitCORE=0)" "$(unit_value LimitCORE "$SERVICE")" 0
# Peer identity reads other users' /proc/PID; a user namespace would map them all to nobody.
ok "ProtectProc= hides no process" sh -c 'v=$(sed -n "s/^ProtectProc=//p" "$1"); [ -z "$v" ] || [ "$v" = default ]' _ "$SERVICE"
ok "PrivateUsers= is off" sh -c 'v=$(sed -n "s/^PrivateUsers=//p" "$1"); [ -z "$v" ] || [ "$v" = no ]' _ "$SERVICE"
is "the service runs as user coffer (whom libcoffer trusts by default)" "$(unit_value User "$SERVICE")" coffer
ok "client/libcoffer.c trusts the user named coffer by default" grep -q ': "coffer", &pw' "$top_srcdir/client/libcoffer.c"

default_socket=$(sed -n 's/.*-DCOFFER_DEFAULT_SOCKET=\\"\([^\\]*\)\\".*/\1/p' "$top_srcdir/Makefile.am")
is "cofferd.socket listens where cofferd and coffer look by default" \
    "$(unit_value ListenStream "$U/cofferd.socket")" "$default_socket"
is "cofferd-creds.socket listens on creds.sock next to it (main.c's default)" \
    "$(unit_value ListenStream "$U/cofferd-creds.socket")" "${default_socket%/*}/creds.sock"
is "cofferd.socket names its fd coffer" "$(unit_value FileDescriptorName "$U/cofferd.socket")" coffer
is "cofferd-creds.socket names its fd creds" "$(unit_value FileDescriptorName "$U/cofferd-creds.socket")" creds
ok "main.c takes the fd named creds as the credential socket" grep -q 'strcmp(name, "creds") == 0' "$top_srcdir/daemon/main.c"
is "the API socket is 0666 (authorization is per request)" "$(unit_value SocketMode "$U/cofferd.socket")" 0666
is "the credential socket is 0600 (only root's helper connects)" "$(unit_value SocketMode "$U/cofferd-creds.socket")" 0600
for s in cofferd.socket cofferd-creds.socket; do
    is "$s activates cofferd.service" "$(unit_value Service "$U/$s")" cofferd.service
    ok "cofferd.service requires $s" grep -qE "^Requires=.*\\b$s\\b" "$SERVICE"
done
# Users fill their session directories: those get a file system of their
# own, apart from the sockets, jwks.json and revoked.json.
sessions=$(unit_value Where "$MOUNT")
is "run-coffer-sessions.mount is the session directory next to the API socket" \
    "$sessions" "$(dirname "$(unit_value ListenStream "$U/cofferd.socket")")/sessions"
is "cofferd.service requires it mounted" "$(unit_value RequiresMountsFor "$SERVICE")" "$sessions"
is "it is a tmpfs" "$(unit_value Type "$MOUNT")" tmpfs
mount_opts=$(unit_value Options "$MOUNT")
ok "it is 0711, the daemon user's, and bounded in size" \
    sh -c 'for o in mode=0711 uid=coffer gid=coffer "size=[^,]+" "nr_inodes=[^,]+" nosuid nodev noexec; do
               echo ",$1," | grep -qE ",$o," || { echo "no $o in $1" >&2; exit 1; }; done' _ "$mount_opts"

# ---- sysusers.d and tmpfiles.d, applied to a scratch root ----
if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
    R=$T/root
    mkdir -p "$R/etc" "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d"
    cp "$SRC/sysusers.d/coffer.conf" "$R/usr/lib/sysusers.d/"
    cp "$SRC/tmpfiles.d/coffer.conf" "$R/usr/lib/tmpfiles.d/"
    ok "systemd-sysusers applies sysusers.d/coffer.conf" systemd-sysusers --root="$R"
    ok "it makes the system user coffer, without a login shell" \
        grep -qE '^coffer:x:[0-9]+:[0-9]+:[^:]*:[^:]*:(/usr)?/s?bin/(nologin|false)$' "$R/etc/passwd"
    ok "it makes the groups coffer and coffer-admin" sh -c 'grep -q "^coffer:" "$1" && grep -q "^coffer-admin:" "$1"' _ "$R/etc/group"
    cuid=$(awk -F: '$1 == "coffer" { print $3 }' "$R/etc/passwd")
    ok "systemd-tmpfiles applies tmpfiles.d/coffer.conf" systemd-tmpfiles --root="$R" --create
    is "/run/coffer is 0755 and the daemon user's" "$(stat -c '%a %u' "$R/run/coffer" 2>&1)" "755 $cuid"
    is "/etc/coffer is 0755 root" "$(stat -c '%a %u' "$R/etc/coffer" 2>&1)" "755 0"
    is "/etc/coffer/policy.d is 0755 root" "$(stat -c '%a %u' "$R/etc/coffer/policy.d" 2>&1)" "755 0"
    is "/var/lib/coffer is 0700 and the daemon user's" "$(stat -c '%a %u' "$R/var/lib/coffer" 2>&1)" "700 $cuid"
    is "RuntimeDirectoryMode= agrees with tmpfiles.d" "$(unit_value RuntimeDirectoryMode "$SERVICE")" 0755
    is "StateDirectoryMode= agrees with tmpfiles.d" "$(unit_value StateDirectoryMode "$SERVICE")" 0700
else
    skip "sysusers.d and tmpfiles.d applied to a scratch root" "needs root, systemd-sysusers and systemd-tmpfiles"
fi

# ---- cofferd inside the unit's sandbox, without systemd ----
missing=
for tool in setpriv unshare systemd-socket-activate useradd capsh python3; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ "$(id -u)" != 0 ] || [ -n "$missing" ]; then
    skip "cofferd in the unit's sandbox" "needs root and:${missing:- (all present)}"
    done_testing
    exit
fi
note "no systemd as PID 1 here: the unit's sandbox is rebuilt from setpriv, unshare and"
note "systemd-socket-activate; the real unit runs in the nspawn-booted end-to-end test"

DU=cfunit$$   # the daemon user, as User=coffer
useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$DU" || { echo "Bail out! useradd failed"; exit 1; }
DPID=
CLEANUP_EXTRA='[ -n "$DPID" ] && kill "$DPID" 2>/dev/null; umount -R "$T/run" 2>/dev/null; userdel "$DU" 2>/dev/null'

# RuntimeDirectory= (on a tmpfs, as /run is) and StateDirectory=, the daemon user's.
mkdir -p "$T/run" "$T/state" "$T/hidden"
mount -t tmpfs -o mode=0755,size=8m cofferunits "$T/run" 2>/dev/null || note "no tmpfs for the runtime directory"
chown "$DU" "$T/run" "$T/state"
chmod 0755 "$T/run"
chmod 0700 "$T/state"
# run-coffer-sessions.mount, with its options, for the daemon user.
mkdir -p "$T/run/sessions"
mount -t tmpfs -o "$(echo "$mount_opts" | sed "s/uid=coffer/uid=$DU/; s/gid=coffer/gid=nogroup/")" \
    coffersessions "$T/run/sessions" 2>/dev/null || note "no tmpfs for the session directories"

# A client binary where the daemon cannot see it (ProtectHome= hides /home).
CLIENT_BIN=$T/hidden/bin
mkdir -p "$CLIENT_BIN"
if [ -x "$top_builddir/.libs/coffer" ]; then
    cp "$top_builddir/.libs/coffer" "$top_builddir"/.libs/libcoffer.so* "$CLIENT_BIN/"
else
    cp "$COFFER" "$CLIENT_BIN/coffer"
fi
chmod -R a+rX "$T/hidden"

# The unit's capabilities in setpriv's spelling: CAP_SYS_PTRACE -> sys_ptrace.
caps=$(unit_value AmbientCapabilities "$SERVICE" | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ \+/,+/g; s/^/+/')
# capsh spells a mask out: 0x...=cap_chown,cap_ipc_lock,cap_sys_ptrace.
want_caps=$(unit_value AmbientCapabilities "$SERVICE" | tr 'A-Z' 'a-z' | words_sorted)
caps_of() { capsh --decode="$(awk -v k="$1:" '$1 == k { print $2 }' "$S")" | sed 's/.*=//' | words_sorted; }

asan=
ldd "$COFFERD" 2>/dev/null | grep -q libasan && asan=1
TRACE=
if [ -z "$asan" ] && command -v strace >/dev/null; then
    # -D: strace runs as a grandchild, so cofferd keeps the pid LISTEN_PID names.
    TRACE="strace -D -f -qq -o $T/strace.out"
fi

api=$(unit_value ListenStream "$U/cofferd.socket"); api=$T/run/${api##*/}
creds=$(unit_value ListenStream "$U/cofferd-creds.socket"); creds=$T/run/${creds##*/}
names=$(unit_value FileDescriptorName "$U/cofferd.socket"):$(unit_value FileDescriptorName "$U/cofferd-creds.socket")
export COFFER_SOCKET=$api COFFER_DAEMON_USER=$DU
# Like the socket units: both sockets bound by someone else (root), named,
# passed on the first connection. Like the service: private mount (with the
# clients' binaries hidden) and network namespaces, the daemon user, the
# unit's ambient capabilities and bounding set, no new privileges.
ASAN_OPTIONS=${ASAN_OPTIONS:-}${asan:+:detect_leaks=0} \
systemd-socket-activate -l "$api" -l "$creds" --fdname="$names" \
    $TRACE unshare -m -n --propagation private \
    sh -c 'mount -t tmpfs -o size=1m cofferhide "$0" && exec "$@"' "$T/hidden" \
    setpriv --reuid="$DU" --regid=nogroup --clear-groups --no-new-privs \
        --inh-caps=-all,"$caps" --ambient-caps="$caps" --bounding-set=-all,"$caps" \
    "$COFFERD" --state-dir "$T/state" --socket "$api" --policy-dir "$POLICY_DIR" \
    >>"$T/cofferd.log" 2>&1 &
DPID=$!   # systemd-socket-activate execs (no fork): this becomes cofferd
wait_until 10 test -S "$api" -a -S "$creds" || { echo "Bail out! no sockets"; sed 's/^/#   /' "$T/cofferd.log"; exit 1; }
chmod "$(unit_value SocketMode "$U/cofferd.socket")" "$api"
chmod "$(unit_value SocketMode "$U/cofferd-creds.socket")" "$creds"

ok "the first connection starts cofferd with the two named sockets" "$COFFER" status
wait_until 5 grep -q 'listening on' "$T/cofferd.log"
if mountpoint -q "$T/run/sessions"; then
    ok "cofferd takes the mount as its session directory root, and the published files as apart from it" \
        sh -c '! grep -E "refusing the session directory|is on the file system of the session directories" "$1"' _ \
        "$T/cofferd.log"
fi
S=/proc/$DPID/status
is "cofferd runs as the daemon user" "$(awk '/^Uid:/ { print $2 }' "$S")" "$(id -u "$DU")"
is "its effective capabilities are the unit's" "$(caps_of CapEff)" "$want_caps"
is "its ambient capabilities are the unit's" "$(caps_of CapAmb)" "$want_caps"
is "its bounding set is the unit's" "$(caps_of CapBnd)" "$want_caps"
is "no new privileges" "$(awk '/^NoNewPrivs:/ { print $2 }' "$S")" 1
ok "cofferd took the passed sockets rather than binding its own" \
    sh -c '[ "$(stat -c %U "$1")" = root ] && [ "$(stat -c %U "$2")" = root ]' _ "$api" "$creds"
if command -v nsenter >/dev/null; then
    ok "the clients' binaries are hidden from cofferd" nsenter -t "$DPID" -m test ! -e "$CLIENT_BIN/coffer"
fi

ok "init, as root" init_keyfile
ok "put and get" sh -c 'printf v1 | "$1" put units/x && [ "$("$1" get units/x)" = v1 ]' _ "$COFFER"
# CAP_SYS_PTRACE: another user's /proc/PID/exe, for a binary outside the daemon's view.
whoami_hidden() {
    as_nobody env LD_LIBRARY_PATH="$CLIENT_BIN" COFFER_SOCKET="$api" COFFER_DAEMON_USER="$DU" \
        "$CLIENT_BIN/coffer" whoami
}
ok_out "another user's client, hidden from the daemon, is identified by its exe" \
    "^exe: +$CLIENT_BIN/coffer\$" whoami_hidden

# CAP_CHOWN: a login session's directory is handed to its user, and taken back.
"$SESSIONTOOL" open nobody --service sshd --tty pts/9 >"$T/session.out" 2>"$T/session.err"
sdir=$(sed -n 's/^dir=//p' "$T/session.out")
ok "a session opens for another user" test -n "$sdir"
is "its directory is handed to that user" "$(stat -c %U "$sdir" 2>&1)" nobody
ok "the session closes" "$SESSIONTOOL" close "$(sed -n 's/^id=//p' "$T/session.out")"
ok "and its directory is gone" test ! -e "${sdir:-/nonexistent}"

ok "a token is issued" sh -c '"$1" token issue --aud units >/dev/null' _ "$COFFER"
is "jwks.json is published world-readable in the runtime directory" "$(stat -c %a "$T/run/jwks.json" 2>&1)" 644
token_id=$("$COFFER" lease ls --json |
    python3 -c 'import json, sys; print(next(l["id"] for l in json.load(sys.stdin) if l["kind"] == "token"))')
ok "the token is revoked" "$COFFER" lease revoke "$token_id"
is "revoked.json is published world-readable" "$(stat -c %a "$T/run/revoked.json" 2>&1)" 644

# PrivateNetwork=: systemd's helper binds an abstract address in its own
# network namespace; the daemon still reads it from the connection.
mark=$(log_mark)
python3 - "$creds" <<'EOF' >/dev/null
import os, socket, sys
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.bind(b"\0" + os.urandom(8).hex().encode() + b"/unit/t-units.service/units-x")
c.connect(sys.argv[1])
c.shutdown(socket.SHUT_WR)
while c.recv(65536):
    pass
EOF
ok "a credential request from the host's network namespace reaches the daemon, unit and all" \
    wait_until 5 log_has "$mark" 't-units\.service'

mark=$(log_mark)
kill -HUP "$DPID"
ok "SIGHUP reloads" wait_until 5 log_has "$mark" 'configuration reloaded'
ok "seal" "$COFFER" operator seal
ok "unseal" unseal_keyfile
kill -TERM "$DPID"
wait "$DPID"
is "SIGTERM stops it, exit status 0" "$?" 0
DPID=

# ---- every system call it made is one the unit allows ----
if [ -z "$TRACE" ]; then
    why="strace not installed"
    [ -n "$asan" ] && why="AddressSanitizer build (LeakSanitizer and strace do not mix)"
    skip "cofferd's system calls are all in the unit's SystemCallFilter=" "$why"
    done_testing
    exit
fi
wait_until 5 grep -q 'exit_group' "$T/strace.out"
# The syscalls SystemCallFilter= lines allow: allow entries add and ~ entries
# remove, in order; an allow list starts from @default (systemd.exec(5)).
systemd-analyze syscall-filter --no-pager >"$T/sets.txt"
awk '
FNR == NR {
    if ($0 ~ /^@/) { set = $1; next }
    if ($1 != "" && $1 !~ /^#/) members[set] = members[set] " " $1
    next
}
function expand(item, out,    n, a, i) {
    if (item !~ /^@/) { out[item] = 1; return }
    n = split(members[item], a, " ")
    for (i = 1; i <= n; i++) expand(a[i], out)
}
/^SystemCallFilter=/ {
    v = substr($0, length("SystemCallFilter=") + 1)
    deny = substr(v, 1, 1) == "~"
    if (deny) v = substr(v, 2)
    if (!started) { started = 1; if (!deny) expand("@default", allow) }
    n = split(v, items, /[ \t]+/)
    for (i = 1; i <= n; i++) {
        if (items[i] == "") continue
        split(items[i], name, ":")
        delete one
        expand(name[1], one)
        for (s in one) if (deny) delete allow[s]; else allow[s] = 1
    }
}
END { for (s in allow) print s }' "$T/sets.txt" "$SERVICE" | sort -u >"$T/allowed.txt"
# cofferd's calls: its pid's, after it execs cofferd (unshare, sh and setpriv come first).
awk -v p="$(awk '/execve\("[^"]*\/cofferd"/ && / = 0$/ { print $1; exit }' "$T/strace.out")" '
    $1 == p && /execve\("[^"]*\/cofferd"/ && / = 0$/ { on = 1; next }
    $1 == p && on {
        sub(/^[0-9]+ +/, "")
        if (sub(/^<\.\.\. /, "")) { sub(/ resumed>.*/, ""); print; next }
        if (match($0, /^[a-z0-9_]+\(/)) print substr($0, 1, RLENGTH - 1)
    }' "$T/strace.out" | sort -u >"$T/used.txt"
note "cofferd made $(wc -l <"$T/used.txt") distinct system calls; the unit allows $(wc -l <"$T/allowed.txt")"
ok "strace saw cofferd at work" test "$(wc -l <"$T/used.txt")" -gt 20
is "cofferd's system calls are all in the unit's SystemCallFilter=" \
    "$(comm -23 "$T/used.txt" "$T/allowed.txt" | tr '\n' ' ')" ""
done_testing
