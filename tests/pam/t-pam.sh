#!/bin/bash
# pam_coffer through real libpam: pam_wrapper reads the service files written
# here, libpamtest (tests/pam/pamtest-coffer) drives open/close, and a real
# cofferd serves the sessions to a real user. Needs root: the daemon serves
# login sessions to uid 0 only and hands each directory to the user.
. "$(dirname "$0")/../integration/lib.sh"

need_root
MODULE="$top_builddir/.libs/pam_coffer.so"
PAMTEST="$top_builddir/tests/pam/pamtest-coffer"
PWRAP=$(ldconfig -p 2>/dev/null | awk '$1 == "libpam_wrapper.so" { print $NF; exit }')
for f in /usr/lib/*/libpam_wrapper.so /usr/lib64/libpam_wrapper.so /usr/lib/libpam_wrapper.so; do
    [ -z "$PWRAP" ] && [ -f "$f" ] && PWRAP=$f
done
PERMIT=
for f in /usr/lib/*/security/pam_permit.so /lib/*/security/pam_permit.so /usr/lib64/security/pam_permit.so \
    /lib64/security/pam_permit.so /usr/lib/security/pam_permit.so; do
    [ -z "$PERMIT" ] && [ -f "$f" ] && PERMIT=$f
done
[ -x "$PAMTEST" ] || skip_all "tests/pam/pamtest-coffer is not built (configure found no libpamtest)"
[ -f "$MODULE" ] || skip_all "pam_coffer.so is not built"
[ -n "$PWRAP" ] || skip_all "pam_wrapper is not installed (Debian: libpam-wrapper)"
[ -n "$PERMIT" ] || skip_all "pam_permit.so not found"
# pam_wrapper loads libpam with RTLD_DEEPBIND, which AddressSanitizer refuses
# outright; the sanitizer build exercises pam_coffer.so through real sshd
# (tests/e2e/t-sshd.sh) instead.
if ldd "$MODULE" 2>/dev/null | grep -q 'libasan'; then
    skip_all "pam_wrapper's RTLD_DEEPBIND cannot run under AddressSanitizer (t-sshd.sh covers the module there)"
fi
command -v useradd >/dev/null || skip_all "useradd not found"
if readelf -d "$MODULE" 2>/dev/null | grep -q 'libasan'; then
    # pam_wrapper is preloaded before the sanitizer runtime.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" PAM_WRAPPER_DISABLE_DEEPBIND=1
fi

# Before anything needs undoing (skip_all does not run CLEANUP_EXTRA).
( echo 0 >/proc/self/loginuid ) 2>/dev/null ||
    skip_all "cannot set the loginuid (needs CAP_AUDIT_CONTROL and a kernel with audit)"

# ---- the user, the daemon, the login ----
retry() { local i; for i in 1 2 3 4 5 6 7 8 9 10; do "$@" && return 0; sleep 0.3; done; return 1; }   # /etc/passwd lock
U="cofferpam$$"
retry useradd --create-home --user-group --shell /usr/sbin/nologin "$U" >/dev/null 2>&1 ||
    skip_all "useradd $U failed"
CLEANUP_EXTRA='retry userdel -r "$U" >/dev/null 2>&1'
U_UID=$(id -u "$U")
# This shell becomes the login's audit session, as pam_loginuid makes sshd's:
# every process below shares it, and it lives as long as the test, so the
# daemon does not end the sessions as abandoned.
echo "$U_UID" >/proc/self/loginuid || { echo "Bail out! cannot set the loginuid"; exit 1; }

mkdir -m 0755 "$T/sessions"
if mount -t tmpfs -o mode=0755,size=8m coffer-test-sessions "$T/sessions" 2>/dev/null; then
    CLEANUP_EXTRA="$CLEANUP_EXTRA; umount -l \"\$T/sessions\""
fi
cat >"$T/login.map" <<'EOF'
# ENV_VAR             FILE               OBJECT
HF_TOKEN_PATH         hf-token           secret:hf/token
INFERENCE_TOKEN_PATH  inference-api.jwt  token:inference-api
WANDB_KEY_PATH        wandb-key          secret:wandb/key
EOF
chmod 0644 "$T/login.map"
cat >"$POLICY_DIR/10-pam.policy" <<EOF
allow read   secret:hf/*           user:$U session:login
allow issue  token:inference-api   user:$U session:login
EOF
chmod 0644 "$POLICY_DIR/10-pam.policy"
DAEMON_ARGS=(--session-dir "$T/sessions" --login-map "$T/login.map")
start_daemon "${DAEMON_ARGS[@]}" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! operator init failed"; exit 1; }
# The values are random, kept in files and compared with cmp: never printed.
(umask 077; printf 'hf_%s' "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$T/hf.value")
(umask 077; printf 'wandb_%s' "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$T/wandb.value")
"$COFFER" put hf/token --file "$T/hf.value" >/dev/null 2>&1 &&
    "$COFFER" put wandb/key --file "$T/wandb.value" >/dev/null 2>&1 || { echo "Bail out! coffer put failed"; exit 1; }

# ---- syslog: a datagram sink at /dev/log ----
# Where /dev/log exists (journald), it is left alone: each PAM run gets a
# private mount namespace in which our sink is bound over it.
SYSLOG="$T/syslog"
: >"$SYSLOG"
LOG_MODE=none
SYSLOG_PID=
start_syslog() {
    local sock
    command -v python3 >/dev/null || return 1
    if [ ! -e /dev/log ] && [ ! -L /dev/log ]; then
        sock=/dev/log LOG_MODE=devlog
    elif unshare --mount --propagation private true 2>/dev/null; then
        sock="$T/log.sock" LOG_MODE=bind
    else
        return 1
    fi
    python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).rstrip(b"\0\n") + b"\n")
' "$sock" "$SYSLOG" &
    SYSLOG_PID=$!
    CLEANUP_EXTRA="$CLEANUP_EXTRA; kill $SYSLOG_PID 2>/dev/null"
    wait_until 5 test -S "$sock" && kill -0 "$SYSLOG_PID" 2>/dev/null || return 1
    # Only a socket our sink bound is removed at the end.
    [ "$LOG_MODE" = devlog ] && CLEANUP_EXTRA="$CLEANUP_EXTRA; rm -f /dev/log"
    return 0
}
start_syslog || { LOG_MODE=none; note "no syslog sink (python3 or a mount namespace missing): log checks skipped"; }

in_log_ns() {   # run COMMAND... where /dev/log reaches the sink
    if [ "$LOG_MODE" = bind ]; then
        unshare --mount --propagation private sh -c 'mount --bind "$0" /dev/log && exec "$@"' "$T/log.sock" "$@"
    else
        "$@"
    fi
}
logged() {   # logged DESCRIPTION ERE: a syslog line matches (priority <8x>: 3 err, 4 warning, 6 info, 7 debug)
    if [ "$LOG_MODE" = none ]; then skip "$1" "no syslog sink"; return; fi
    ok "$1" wait_until 3 grep -qE -- "$2" "$SYSLOG"
}

# ---- PAM ----
PAMD="$T/pam.d"
mkdir -m 0755 "$PAMD"
printf 'session required %s\n' "$PERMIT" >"$PAMD/other"
PAM_CMD=(env LD_PRELOAD="$PWRAP" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$PAMD" PAM_WRAPPER_USE_SYSLOG=1)
if [ -n "${PAM_TEST_VALGRIND:-}" ]; then   # PAM_TEST_VALGRIND=1: every PAM run under valgrind
    PAM_CMD+=(PAM_WRAPPER_DISABLE_DEEPBIND=1 valgrind -q --error-exitcode=97 --leak-check=full
        --errors-for-leak-kinds=definite --show-leak-kinds=definite)
fi
PAM_CMD+=("$PAMTEST")
pamtest() { in_log_ns "${PAM_CMD[@]}" "$@"; }
pamtest_nobody() { in_log_ns setpriv --reuid=nobody --regid=nogroup --clear-groups "${PAM_CMD[@]}" "$@"; }
pamtest_other_login() {   # in a new audit session (another login of the same user)
    in_log_ns bash -c 'echo "$1" >/proc/self/loginuid || exit 99; shift; exec "$@"' _ "$U_UID" "${PAM_CMD[@]}" "$@"
}
# service NAME ARGS...: pam_coffer alone and required. libpam then returns
# the module's own code, except that a stack in which every module ignored
# ends in PAM_PERM_DENIED: with pam_coffer alone, that is its PAM_IGNORE.
IGNORED=PAM_PERM_DENIED
service() { local n=$1; shift; echo "session required $MODULE socket=$COFFER_SOCKET $*" >"$PAMD/$n"; }
# stack NAME ARGS...: as deployed: pam_coffer optional, then the rest of the stack.
stack() {
    local n=$1; shift
    printf 'session optional %s socket=%s %s\nsession required %s\n' "$MODULE" "$COFFER_SOCKET" "$*" "$PERMIT" >"$PAMD/$n"
}
service coffer debug
service coffer-closed fail=closed
service coffer-keyring keyring
service coffer-odd frobnicate=1 ttl=soon debug
service coffer-ttl ttl=30m
service coffer-hang timeout=1s
service coffer-hang-closed timeout=1s fail=closed
stack stack-closed fail=closed

envval() { sed -n "s/^$2=//p" "$1"; }   # envval FILE NAME
listed() { "$COFFER" lease ls --all 2>/dev/null | grep -q -- "$1"; }
as_user() { setpriv --reuid="$U" --regid="$U" --clear-groups "$@"; }

# ---- open in one process, close in another ----
ok "open_session: PAM_SUCCESS" pamtest --tty pts/1 --rhost 192.0.2.7 coffer "$U" open=PAM_SUCCESS env="$T/env.a"
SID=$(envval "$T/env.a" COFFER_SESSION_ID)
DIR=$(envval "$T/env.a" COFFER_SESSION_DIR)
HF=$(envval "$T/env.a" HF_TOKEN_PATH)
JWT=$(envval "$T/env.a" INFERENCE_TOKEN_PATH)
ok "COFFER_SESSION_ID is a lease id" grep -qE '^COFFER_SESSION_ID=[0-9a-f]{32}$' "$T/env.a"
is "COFFER_SESSION_DIR is the session directory" "$DIR" "$T/sessions/$SID"
is "HF_TOKEN_PATH names hf-token in it" "$HF" "$DIR/hf-token"
is "INFERENCE_TOKEN_PATH names inference-api.jwt in it" "$JWT" "$DIR/inference-api.jwt"
ok "WANDB_KEY_PATH (offered, not allowed by policy) is not exported" \
    sh -c '! grep -q "^WANDB_KEY_PATH=" "$1" && ! test -e "$2/wandb-key"' _ "$T/env.a" "$DIR"
is "the directory is the user's, mode 0500" "$(stat -c '%U %a' "$DIR" 2>&1)" "$U 500"
is "hf-token is the user's, mode 0400" "$(stat -c '%U %a' "$HF" 2>&1)" "$U 400"
is "inference-api.jwt is the user's, mode 0400" "$(stat -c '%U %a' "$JWT" 2>&1)" "$U 400"
ok "hf-token holds the secret (compared, not printed)" cmp -s "$HF" "$T/hf.value"
ok "the token file holds a JWT" grep -qE '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$JWT"
ok "the user can read hf-token" as_user sh -c 'cat "$1" >/dev/null' _ "$HF"
ok "the user cannot add files to the directory" as_user sh -c '! touch "$1/x" 2>/dev/null' _ "$DIR"
ok "another user cannot read hf-token" as_nobody sh -c '! cat "$1" >/dev/null 2>&1' _ "$HF"
ok "coffer lease ls --all lists the session lease" listed "$SID"
ok "...and the token issued under it" sh -c '"$1" lease ls --all --json | grep -q "\"parent\":\"$2\""' _ "$COFFER" "$SID"
logged "the open is logged (info)" "^<86>.*pam_coffer\(coffer:session\): coffer session $SID opened for $U"
logged "debug: the request is logged with service, tty and rhost" \
    "^<87>.*opening a coffer session for $U \(service coffer, tty pts/1, rhost 192\.0\.2\.7\)"
logged "debug: the entry the policy refused is counted" "^<87>.*1 login map entry not delivered to $U"

ok "close_session from a fresh process (same user, service, tty): PAM_SUCCESS" \
    pamtest --tty pts/1 coffer "$U" close=PAM_SUCCESS
ok "the directory is gone" test ! -e "$DIR"
ok "the session lease is gone" sh -c '! "$1" lease ls --all | grep -q "$2"' _ "$COFFER" "$SID"
ok "...and the token issued under it" sh -c '! "$1" lease ls --all --json | grep -q "\"parent\":\"$2\""' _ "$COFFER" "$SID"
logged "the close is logged" \
    "^<86>.*pam_coffer\(coffer:session\): coffer session of this login \(service coffer, tty pts/1\) closed for $U"
ok "closing again, with nothing open: PAM_SUCCESS" pamtest --tty pts/1 coffer "$U" close=PAM_SUCCESS
logged "debug: ...logged as already closed" \
    "^<87>.*no open coffer session of this login \(service coffer, tty pts/1\) for $U \(already closed\)"

# ---- one handle: open, close, close ----
ok "open, close, close again in one handle: PAM_SUCCESS each" \
    pamtest --tty pts/2 coffer "$U" open=PAM_SUCCESS env="$T/env.b" close=PAM_SUCCESS close=PAM_SUCCESS
D=$(envval "$T/env.b" COFFER_SESSION_DIR)
ok "its directory is gone" sh -c '[ -n "$1" ] && [ ! -e "$1" ]' _ "$D"
ok "its lease is gone" sh -c '! "$1" lease ls --all | grep -q "$2"' _ "$COFFER" "$(envval "$T/env.b" COFFER_SESSION_ID)"

# ---- which session a close finds ----
ok "open a first session on pts/3" pamtest --tty pts/3 coffer "$U" open=PAM_SUCCESS env="$T/env.c1"
ok "open a second session on pts/3" pamtest --tty pts/3 coffer "$U" open=PAM_SUCCESS env="$T/env.c2"
D1=$(envval "$T/env.c1" COFFER_SESSION_DIR)
D2=$(envval "$T/env.c2" COFFER_SESSION_DIR)
ok "close with COFFER_SESSION_ID (first) in the PAM environment: PAM_SUCCESS" \
    pamtest --tty pts/3 coffer "$U" putenv=COFFER_SESSION_ID="$(envval "$T/env.c1" COFFER_SESSION_ID)" close=PAM_SUCCESS
ok "...closed the first session, not the newest" sh -c '[ ! -e "$1" ] && [ -d "$2" ]' _ "$D1" "$D2"
ok "a malformed COFFER_SESSION_ID is ignored: the close goes by user, service and tty" \
    pamtest --tty pts/3 coffer "$U" putenv=COFFER_SESSION_ID=../../etc close=PAM_SUCCESS
ok "...and closed the second" test ! -e "$D2"
logged "...with a warning" "^<84>.*ignoring malformed COFFER_SESSION_ID"

ok "open a session on pts/4" pamtest --tty pts/4 coffer "$U" open=PAM_SUCCESS env="$T/env.d"
D=$(envval "$T/env.d" COFFER_SESSION_DIR)
ok "close from another login (audit session) of the same user: PAM_SUCCESS" \
    pamtest_other_login --tty pts/4 coffer "$U" close=PAM_SUCCESS
ok "...but that session is not this login's: it stays open" test -d "$D"
ok "a close for another tty leaves it open too" pamtest --tty pts/40 coffer "$U" close=PAM_SUCCESS
ok "...still open" test -d "$D"
ok "close from this login: PAM_SUCCESS" pamtest --tty pts/4 coffer "$U" close=PAM_SUCCESS
ok "...closed" test ! -e "$D"

# ---- arguments ----
ok "unknown and malformed arguments do not stop the session" \
    pamtest --tty pts/5 coffer-odd "$U" open=PAM_SUCCESS close=PAM_SUCCESS
logged "an unknown argument is logged as a warning" \
    '^<84>.*pam_coffer\(coffer-odd:session\): ignoring unknown argument "frobnicate=1"'
logged "a malformed ttl= is logged as a warning" '^<84>.*pam_coffer\(coffer-odd:session\): ignoring ttl=soon'
ok "ttl=30m: open" pamtest --tty pts/6 coffer-ttl "$U" open=PAM_SUCCESS env="$T/env.ttl"
TTL_SID=$(envval "$T/env.ttl" COFFER_SESSION_ID)
lease_ttl() {   # seconds from issue to expiry of lease $1, from `coffer lease ls --all --json`
    "$COFFER" lease ls --all --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for l in (d["leases"] if isinstance(d, dict) else d):
    if l["id"] == sys.argv[1]:
        print(l["expires"] - l["issued"])' "$1"
}
if command -v python3 >/dev/null; then
    is "ttl=30m: the session lease lives 1800 s" "$(lease_ttl "$TTL_SID" 2>&1)" 1800
else
    skip "ttl=30m: the session lease lives 1800 s" "no python3 to read the JSON"
fi
ok "ttl=30m: close" pamtest --tty pts/6 coffer-ttl "$U" close=PAM_SUCCESS

# ---- users ----
ok "an unknown user: PAM_USER_UNKNOWN" pamtest --tty pts/7 coffer "nosuchuser$$" open=PAM_USER_UNKNOWN
logged "...logged as an error" "^<83>.*pam_coffer\(coffer:session\): unknown user \"nosuchuser$$\""

# ---- keyring ----
ok "keyring: the token is in the session keyring, the user's, equal to its file; gone after close" \
    pamtest --tty pts/8 coffer-keyring "$U" newkeyring open=PAM_SUCCESS keyring=INFERENCE_TOKEN_PATH \
    nokey=HF_TOKEN_PATH close=PAM_SUCCESS nokey=INFERENCE_TOKEN_PATH
ok "without keyring, nothing is put in the keyring" \
    pamtest --tty pts/9 coffer "$U" newkeyring open=PAM_SUCCESS nokey=INFERENCE_TOKEN_PATH close=PAM_SUCCESS
# Keep a copy of a session token (root only) to prove it is never logged.
ok "keyring: open a session and keep it" \
    pamtest --tty pts/10 coffer-keyring "$U" newkeyring open=PAM_SUCCESS env="$T/env.k"
(umask 077; cat "$(envval "$T/env.k" INFERENCE_TOKEN_PATH)" >"$T/token.value" 2>/dev/null)
ok "...and close it from another process" pamtest --tty pts/10 coffer-keyring "$U" close=PAM_SUCCESS

# As sshd runs it: pam_loginuid, pam_keyinit, then pam_coffer (see pam_coffer(8)).
SECDIR=$(dirname "$PERMIT")
if [ -f "$SECDIR/pam_loginuid.so" ] && [ -f "$SECDIR/pam_keyinit.so" ]; then
    printf '%s\n' "session required $SECDIR/pam_loginuid.so" "session optional $SECDIR/pam_keyinit.so force revoke" \
        "session optional $MODULE socket=$COFFER_SOCKET keyring" "session required $PERMIT" >"$PAMD/sshd"
    ok "an sshd-like stack (pam_loginuid, pam_keyinit force revoke, pam_coffer keyring): open, key, close" \
        pamtest --tty ssh --rhost 198.51.100.4 sshd "$U" open=PAM_SUCCESS env="$T/env.sshd" \
        keyring=INFERENCE_TOKEN_PATH close=PAM_SUCCESS nokey=INFERENCE_TOKEN_PATH
    ok "...its directory is gone" sh -c '[ -n "$1" ] && [ ! -e "$1" ]' _ "$(envval "$T/env.sshd" COFFER_SESSION_DIR)"
else
    skip "an sshd-like stack" "pam_loginuid.so or pam_keyinit.so not found"
    skip "...its directory is gone" "pam_loginuid.so or pam_keyinit.so not found"
fi

# A COFFER_SESSION_ID in the PAM environment is not proof of anything (pam_env
# with user_readenv, an application passing the user's environment), and
# every session id is a directory name in SESSION_DIR: closing by id must
# not reach another user's session.
ok "a session of another user (nobody) is open" pamtest --tty pts/20 coffer nobody open=PAM_SUCCESS env="$T/env.other"
OTHER_DIR=$(envval "$T/env.other" COFFER_SESSION_DIR)
ok "close as $U with the other user's id planted in COFFER_SESSION_ID: PAM_SUCCESS" \
    pamtest --tty pts/21 coffer "$U" putenv=COFFER_SESSION_ID="$(envval "$T/env.other" COFFER_SESSION_ID)" close=PAM_SUCCESS
ok "...the other user's session stays open" test -d "$OTHER_DIR"
pamtest --tty pts/20 coffer nobody close=PAM_SUCCESS >/dev/null 2>&1

# ---- a caller that is not root ----
ok "not root, fail=open: PAM_IGNORE" pamtest_nobody --tty pts/11 coffer "$U" open="$IGNORED"
logged "...logged as an error with the daemon's reason" \
    "^<83>.*pam_coffer\(coffer:session\): cannot open the coffer session of $U: .*only root.*\(fail=open"
ok "not root, fail=closed: PAM_SESSION_ERR" pamtest_nobody --tty pts/11 coffer-closed "$U" open=PAM_SESSION_ERR
ok "not root, optional in the stack: the login goes on" \
    pamtest_nobody --tty pts/11 stack-closed "$U" open=PAM_SUCCESS

# ---- sealed ----
"$COFFER" operator seal >/dev/null 2>&1
ok "sealed, fail=open: PAM_IGNORE" pamtest --tty pts/12 coffer "$U" open="$IGNORED"
logged "...logged as a warning" "^<84>.*pam_coffer\(coffer:session\): cannot open the coffer session of $U: .*seal.*\(fail=open"
ok "sealed, fail=closed: PAM_SESSION_ERR" pamtest --tty pts/12 coffer-closed "$U" open=PAM_SESSION_ERR
logged "...logged as an error" "^<83>.*pam_coffer\(coffer-closed:session\): cannot open the coffer session .*\(fail=closed"
ok "sealed, optional in the stack: the login goes on" pamtest --tty pts/12 stack-closed "$U" open=PAM_SUCCESS
ok "sealed, close with fail=open: PAM_IGNORE" pamtest --tty pts/12 coffer "$U" close="$IGNORED"
unseal_keyfile

# ---- daemon down ----
stop_daemon
ok "daemon down, fail=open: PAM_IGNORE" pamtest --tty pts/13 coffer "$U" open="$IGNORED"
logged "...logged as a warning" \
    "^<84>.*pam_coffer\(coffer:session\): cannot open the coffer session of $U: .*running.*\(fail=open: login continues"
ok "daemon down, fail=closed: PAM_SESSION_ERR" pamtest --tty pts/13 coffer-closed "$U" open=PAM_SESSION_ERR
ok "daemon down, optional in the stack: the login goes on" pamtest --tty pts/13 stack-closed "$U" open=PAM_SUCCESS
ok "daemon down, close with fail=closed: PAM_SESSION_ERR" pamtest --tty pts/13 coffer-closed "$U" close=PAM_SESSION_ERR
if command -v python3 >/dev/null; then
    # A socket left behind by a dead daemon: connect is refused.
    python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$COFFER_SOCKET"
    ok "stale socket (connection refused), fail=open: PAM_IGNORE" pamtest --tty pts/13 coffer "$U" open="$IGNORED"
    ok "stale socket, fail=closed: PAM_SESSION_ERR" pamtest --tty pts/13 coffer-closed "$U" open=PAM_SESSION_ERR
    rm -f "$COFFER_SOCKET"
    # A socket whose owner never accepts and whose queue is full (a hung
    # daemon behind a socket systemd holds): connect() itself blocks.
    python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(0)
held = []
while True:
    c = socket.socket(socket.AF_UNIX); c.setblocking(False)
    try:
        c.connect(sys.argv[1]); held.append(c)
    except BlockingIOError:
        break
open(sys.argv[2], "w").write("%d\n" % len(held))
time.sleep(300)' "$COFFER_SOCKET" "$T/full.ready" &
FULL_PID=$!
wait_until 10 test -s "$T/full.ready"
t0=$(date +%s)
ok "a full listen queue, timeout=1s fail=open: PAM_IGNORE" \
    timeout 30 "${PAM_CMD[@]}" --tty pts/16 coffer-hang "$U" open="$IGNORED"
ok "a full listen queue, timeout=1s fail=closed: PAM_SESSION_ERR" \
    timeout 30 "${PAM_CMD[@]}" --tty pts/16 coffer-hang-closed "$U" open=PAM_SESSION_ERR
ok "...both gave up within a few seconds (connect() is under the timeout too)" test $(( $(date +%s) - t0 )) -le 6
kill "$FULL_PID" 2>/dev/null; wait "$FULL_PID" 2>/dev/null
rm -f "$COFFER_SOCKET"
fi
start_daemon "${DAEMON_ARGS[@]}" && unseal_keyfile || { echo "Bail out! cofferd did not restart"; exit 1; }

# ---- a hung daemon (stopped): logins must not hang with it ----
kill -STOP "$DAEMON_PID"
t0=$(date +%s)
ok "daemon hung, timeout=1s fail=open: PAM_IGNORE" pamtest --tty pts/15 coffer-hang "$U" open="$IGNORED"
ok "daemon hung, timeout=1s fail=closed: PAM_SESSION_ERR" pamtest --tty pts/15 coffer-hang-closed "$U" open=PAM_SESSION_ERR
ok "...both gave up within a few seconds" test $(( $(date +%s) - t0 )) -le 6
logged "...the log says the daemon did not answer" "pam_coffer\(coffer-hang:session\): .*did not answer within 1000 ms"
kill -CONT "$DAEMON_PID"
ok "after a restart and unseal, sessions open again" \
    pamtest --tty pts/14 coffer "$U" open=PAM_SUCCESS close=PAM_SUCCESS

# ---- no value anywhere it should not be ----
for f in hf.value wandb.value token.value; do
    if [ -s "$T/$f" ]; then
        ok "no ${f%.value} value in syslog, the daemon's log, the audit log or the exported environments" \
            sh -c '! grep -qF -f "$1" -- "$2" "$3" "$4" "$5"/env.*' _ "$T/$f" "$SYSLOG" "$T/cofferd.log" "$T/audit.log" "$T"
    else
        skip "no ${f%.value} value in the logs" "no value captured"
    fi
done
[ "$LOG_MODE" = none ] || ok "the syslog sink saw pam_coffer" grep -q 'pam_coffer(' "$SYSLOG"

done_testing
