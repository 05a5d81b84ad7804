#!/bin/bash
# End to end: a user logs in over a real sshd (public key, UsePAM) whose PAM
# session stack has pam_loginuid and pam_coffer.so, against a real cofferd.
# Inside the login the user finds their credentials (HF_TOKEN_PATH, ...) and may
# use session:login rights; the same user outside it may not. Logout revokes
# the session, its directory and the tokens issued under it; so does killing
# the connection with SIGKILL (no close_session: cofferd watches the process
# that opened the session, sshd's monitor, and finds the audit session empty
# at once; the periodic sweep is set to 10 minutes so that it cannot be what
# ends it).
#
# Needs root, openssh-server (/usr/sbin/sshd) and openssh-client. Everything it
# creates (user, /etc/pam.d/sshd-coffer$$, the sshd symlink, an authorized keys
# dir under /run, a tmpfs, processes) is removed on exit, pass or fail.
. "$(dirname "$0")/../integration/lib.sh"

need_root
SSHD_BIN=/usr/sbin/sshd
MODULE="$top_builddir/.libs/pam_coffer.so"
[ -x "$SSHD_BIN" ] || skip_all "openssh-server is not installed ($SSHD_BIN missing; Debian: apt-get install openssh-server)"
if ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    skip_all "openssh-client (ssh, ssh-keygen) is not installed"
fi
[ -f "$MODULE" ] || skip_all "pam_coffer.so is not built ($MODULE)"
LOGINUID=
for f in /usr/lib/*/security/pam_loginuid.so /lib/*/security/pam_loginuid.so /usr/lib64/security/pam_loginuid.so \
    /lib64/security/pam_loginuid.so /usr/lib/security/pam_loginuid.so; do
    [ -z "$LOGINUID" ] && [ -f "$f" ] && LOGINUID=$f
done
[ -n "$LOGINUID" ] || skip_all "pam_loginuid.so not found (Debian: libpam-modules)"
for c in useradd userdel setpriv sha256sum python3; do
    command -v "$c" >/dev/null || skip_all "$c not found"
done
[ -d /etc/pam.d ] || skip_all "no /etc/pam.d"
# sshd's pam_loginuid must be able to start an audit session, as on a real host.
( echo 0 >/proc/self/loginuid ) 2>/dev/null ||
    skip_all "cannot set the loginuid (needs CAP_AUDIT_CONTROL and a kernel with audit)"
PY=/usr/bin/python3
# The user runs the coffer CLI from the build tree and reaches the daemon's
# socket in $T: both must be traversable by others.
as_nobody "$COFFER" --help >/dev/null 2>&1 ||
    skip_all "other users cannot run $COFFER (is the build directory traversable by others?)"
# shellcheck disable=SC2016
as_nobody sh -c 'cd "$1"' sh "$T" 2>/dev/null ||
    skip_all "other users cannot reach $T (TMPDIR must be traversable by others)"
# A sanitizer build of the module: sshd is not linked with the runtime, so it
# is preloaded (ASAN_OPTIONS would not do: sshd's setproctitle overwrites the
# environment block the runtime reads it from when PAM loads the module).
SSHD_ENV=()
if readelf -d "$MODULE" 2>/dev/null | grep -q 'libasan'; then
    ASAN_RT=$(ldd "$MODULE" 2>/dev/null | awk '$1 ~ /^libasan/ { print $3; exit }')
    [ -f "$ASAN_RT" ] || skip_all "pam_coffer.so is built with ASan but its runtime was not found"
    SSHD_ENV=(env "LD_PRELOAD=$ASAN_RT" "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi

# Nothing to undo before here: skip_all does not run CLEANUP_EXTRA.

S=$$
U=cfssh$S
SVC=sshd-coffer$S
PAMFILE=/etc/pam.d/$SVC
SSHD_PID=
SSHD_LINK=
AKDIR=
MADE_RUN_SSHD=
SESSIONS_MOUNTED=
USER_MADE=
CLIENT_PIDS=

retry() { local _; for _ in 1 2 3 4 5 6 7 8 9 10; do "$@" && return 0; sleep 0.3; done; return 1; }   # /etc/passwd lock

descendants() {   # descendants PID: every process below PID
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

sshd_running() {   # is any process running /usr/sbin/sshd?
    local f
    for f in /proc/[0-9]*/exe; do
        [ "$(readlink "$f" 2>/dev/null)" = "$SSHD_BIN" ] && return 0
    done
    return 1
}

e2e_cleanup() {
    local p kids=
    for p in $CLIENT_PIDS; do kill -KILL "$p" 2>/dev/null; done
    if [ -n "$SSHD_PID" ]; then
        # The per-connection sshd processes outlive the listener: find them first.
        kids=$(descendants "$SSHD_PID")
        kill -TERM "$SSHD_PID" 2>/dev/null
        for p in $kids; do kill -KILL "$p" 2>/dev/null; done
        wait "$SSHD_PID" 2>/dev/null
    fi
    if [ -n "$USER_MADE" ]; then
        pkill -KILL -u "$U" 2>/dev/null
        retry userdel -r "$U" >/dev/null 2>&1
    fi
    rm -f "$PAMFILE"
    [ -n "$SSHD_LINK" ] && rm -f "$SSHD_LINK"
    [ -n "$AKDIR" ] && rm -rf "$AKDIR"
    # /run/sshd goes only if no sshd (a parallel run's, the system's) may need it.
    [ -n "$MADE_RUN_SSHD" ] && ! sshd_running && rmdir /run/sshd 2>/dev/null
    [ -n "$SESSIONS_MOUNTED" ] && umount -l "$T/run" 2>/dev/null
    return 0
}
# shellcheck disable=SC2034  # run by lib.sh's cleanup
CLEANUP_EXTRA=e2e_cleanup

# ---- the user and their key ----
retry useradd --create-home --user-group --shell /bin/sh "$U" >/dev/null 2>&1 || skip_all "useradd $U failed"
USER_MADE=1
U_UID=$(id -u "$U")
U_GID=$(id -g "$U")
ssh-keygen -q -t ed25519 -N '' -C "coffer-e2e" -f "$T/id_ed25519" || { echo "Bail out! ssh-keygen failed"; exit 1; }
ssh-keygen -q -t ed25519 -N '' -C "coffer-e2e-host" -f "$T/host_ed25519" || { echo "Bail out! ssh-keygen failed"; exit 1; }
# sshd's StrictModes wants every directory above the keys file root-owned and
# not group/world-writable: /tmp (1777) is not, so the keys live under /run.
AKDIR=$(mktemp -d /run/coffer-e2e-keys.XXXXXX) || { echo "Bail out! mktemp under /run failed"; exit 1; }
chmod 0755 "$AKDIR"
install -m 0644 "$T/id_ed25519.pub" "$AKDIR/$U"

# ---- cofferd: session dir on a tmpfs, login map, session:login policy ----
mkdir -m 0755 "$T/run"
if mount -t tmpfs -o mode=0755,size=8m coffer-e2e-sessions "$T/run" 2>/dev/null; then
    SESSIONS_MOUNTED=1
fi
SD=$T/run/sessions
cat >"$T/login.map" <<'EOF'
# ENV_VAR             FILE               OBJECT
HF_TOKEN_PATH         hf-token           secret:hf/token
INFERENCE_TOKEN_PATH  inference-api.jwt  token:inference-api
EOF
printf 'session_check_interval = 10m\n' >"$T/cofferd.conf"
chmod 0644 "$T/login.map" "$T/cofferd.conf"
cat >"$POLICY_DIR/10-e2e.policy" <<EOF
allow read   secret:hf/*           user:$U session:login
allow issue  token:inference-api   user:$U session:login
EOF
chmod 0644 "$POLICY_DIR/10-e2e.policy"
start_daemon --config "$T/cofferd.conf" --session-dir "$SD" --login-map "$T/login.map" ||
    { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! operator init failed"; exit 1; }
# The value is random, kept in a file and compared by hash: never printed.
(umask 077; printf 'hf_%s' "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$T/hf.value")
"$COFFER" put hf/token --file "$T/hf.value" >/dev/null 2>&1 || { echo "Bail out! coffer put failed"; exit 1; }
HF_SHA=$(sha256sum <"$T/hf.value" | cut -d' ' -f1)

# ---- sshd: private config, PAM service sshd-coffer$$ ----
cat >"$PAMFILE" <<EOF
# coffer e2e test (tests/e2e/t-sshd.sh, pid $S); removed when the test ends.
@include common-account
session  required  $LOGINUID
session  required  $MODULE socket=$COFFER_SOCKET fail=closed debug
@include common-session
EOF
chmod 0644 "$PAMFILE"
# sshd names its PAM service after argv[0].
SSHD_LINK=$T/$SVC
ln -s "$SSHD_BIN" "$SSHD_LINK"
if [ ! -d /run/sshd ]; then
    mkdir -m 0755 /run/sshd && MADE_RUN_SSHD=1
fi

port_free() {   # nothing listens on TCP port $1 (v4 or v6)
    local hex
    hex=$(printf '%04X' "$1")
    ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }'
}

write_sshd_config() {
    cat >"$T/sshd_config" <<EOF
Port $1
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $T/host_ed25519
PidFile $T/sshd.pid
UsePAM yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
AuthorizedKeysFile $AKDIR/%u
StrictModes yes
PermitRootLogin no
AllowUsers $U
PermitUserEnvironment no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 20
LoginGraceTime 20
LogLevel VERBOSE
EOF
}

PORT=
for p in $(shuf -i 20000-60999 -n 30); do
    port_free "$p" || continue
    write_sshd_config "$p"
    : >"$T/sshd.log"
    "${SSHD_ENV[@]}" "$SSHD_LINK" -D -e -f "$T/sshd_config" >>"$T/sshd.log" 2>&1 &
    SSHD_PID=$!
    if wait_until 10 sh -c "grep -q 'Server listening on 127.0.0.1 port $p' '$T/sshd.log' || ! kill -0 $SSHD_PID"; then
        if kill -0 "$SSHD_PID" 2>/dev/null; then PORT=$p; break; fi
    fi
    kill -TERM "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null; SSHD_PID=
    grep -q 'Bind to port' "$T/sshd.log" || break   # not a port race: do not retry
done
if [ -z "$PORT" ]; then
    echo "Bail out! sshd did not start:"; sed 's/^/#   /' "$T/sshd.log" | head -20
    exit 1
fi
note "sshd ($SVC) on 127.0.0.1:$PORT, user $U"

SSH=(ssh -F /dev/null -T -p "$PORT" -i "$T/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
     -o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=3 "$U@127.0.0.1")
q() { printf '%q' "$1"; }
REMOTE_ENV="COFFER_SOCKET=$(q "$COFFER_SOCKET") COFFER=$(q "$COFFER")"

# What a login does: report, one key=value per line, then hold the login open
# until the client's stdin closes (logout). Runs as the user, inside the login.
cat >"$T/inside.sh" <<'EOF'
#!/bin/sh
echo "uid=$(id -u)"
echo "loginuid=$(cat /proc/self/loginuid)"
echo "sessionid=$(cat /proc/self/sessionid)"
echo "dir=${COFFER_SESSION_DIR:-}"
echo "id=${COFFER_SESSION_ID:-}"
echo "hf_path=${HF_TOKEN_PATH:-}"
echo "inf_path=${INFERENCE_TOKEN_PATH:-}"
if [ "${1:-}" = full ]; then
    echo "dir_stat=$(stat -c '%U %a' "$COFFER_SESSION_DIR" 2>&1)"
    echo "hf_stat=$(stat -c '%U %a' "$HF_TOKEN_PATH" 2>&1)"
    echo "hf_sha=$(cat "$HF_TOKEN_PATH" | sha256sum | cut -d' ' -f1)"
    echo "get_sha=$("$COFFER" get hf/token 2>/dev/null | sha256sum | cut -d' ' -f1)"
    tok=$("$COFFER" token issue --aud inference-api 2>"$HOME/issue.err"); echo "issue_rc=$?"
    echo "token=$tok"
    printf '%s' "$tok" | "$COFFER" token verify - --aud inference-api >"$HOME/verify.out" 2>&1
    echo "verify_rc=$?"
    echo "verify_status=$(sed -n 's/^Status: *//p' "$HOME/verify.out")"
fi
echo ready
exec cat >/dev/null
EOF
chmod 0755 "$T/inside.sh"

field() { sed -n "s/^$1=//p" "$2" | head -1; }

login() {   # login NAME [full]: ssh in and hold the login; $T/NAME.out, client pid in LOGIN_PID
    local name=$1 mode=${2:-}
    rm -f "$T/$name.in"; mkfifo -m 0600 "$T/$name.in"
    # The test keeps the fifo's write end (fd 8/9) open: closing it is the logout.
    if [ "$name" = a ]; then exec 8<>"$T/$name.in"; else exec 9<>"$T/$name.in"; fi
    ( umask 077; exec "${SSH[@]}" "$REMOTE_ENV sh $(q "$T/inside.sh") $mode" \
        <"$T/$name.in" >"$T/$name.out" 2>"$T/$name.err" 8>&- 9>&- ) &
    LOGIN_PID=$!
    CLIENT_PIDS="$CLIENT_PIDS $LOGIN_PID"
    wait_until 20 sh -c "grep -qx ready '$T/$name.out' || ! kill -0 $LOGIN_PID"
    grep -qx ready "$T/$name.out"
}

lease_json() { "$COFFER" lease ls --all --json; }
lease_field() {   # lease_field ID KEY: a field of lease ID, "" if there is none
    lease_json | "$PY" -c 'import json,sys; l=[x for x in json.load(sys.stdin) if x["id"]==sys.argv[1]]; print(l[0][sys.argv[2]] if l else "")' "$1" "$2"
}
leases_of() {   # leases_of ID: how many listed leases are ID or were issued under it
    lease_json | "$PY" -c 'import json,sys; print(sum(1 for x in json.load(sys.stdin) if sys.argv[1] in (x["id"], x["parent"])))' "$1"
}
none_of() { [ -n "$1" ] && [ "$(leases_of "$1")" = 0 ]; }   # none_of ID: ID and its children are gone
in_audit_session() {   # pids in kernel audit session $1
    local f
    for f in /proc/[0-9]*/sessionid; do
        [ "$(cat "$f" 2>/dev/null)" = "$1" ] && { f=${f#/proc/}; echo "${f%/sessionid}"; }
    done
}
audit_session_empty() { [ -n "$1" ] && [ -z "$(in_audit_session "$1")" ]; }

# ---- a login, held open ----
if ! login a full; then
    echo "not ok 1 - the user logs in with their key"
    sed 's/^/#   ssh: /' "$T/a.err" | head -10
    tail -n 20 "$T/sshd.log" | sed 's/^/#   sshd: /'
    echo "Bail out! the login did not come up"
    exit 1
fi
A_PID=$LOGIN_PID
ok "the user logs in with their key (pubkey, UsePAM, service $SVC)" grep -qx "uid=$U_UID" "$T/a.out"
ID=$(field id "$T/a.out") DIR=$(field dir "$T/a.out") SID=$(field sessionid "$T/a.out")
ok "pam_loginuid gave the login its own audit session" \
    test "$(field loginuid "$T/a.out")" = "$U_UID" -a -n "$SID" -a "$SID" != 4294967295 \
    -a "$SID" != "$(cat /proc/self/sessionid)"
ok "COFFER_SESSION_ID is a lease id" sh -c "echo '$ID' | grep -qE '^[0-9a-f]{32}$'"
is "COFFER_SESSION_DIR is SESSION_DIR/ID" "$DIR" "$SD/$ID"
is "HF_TOKEN_PATH (pam_putenv) reaches the command's environment" "$(field hf_path "$T/a.out")" "$DIR/hf-token"
is "so does INFERENCE_TOKEN_PATH" "$(field inf_path "$T/a.out")" "$DIR/inference-api.jwt"
is "the session directory is the user's, mode 0500 (seen inside)" "$(field dir_stat "$T/a.out")" "$U 500"
is "HF_TOKEN_PATH is the user's, mode 0400" "$(field hf_stat "$T/a.out")" "$U 400"
is "cat \"\$HF_TOKEN_PATH\" gives the secret (sha256)" "$(field hf_sha "$T/a.out")" "$HF_SHA"
is "coffer get hf/token works inside the login (session:login)" "$(field get_sha "$T/a.out")" "$HF_SHA"
is "coffer token issue --aud inference-api works inside the login" "$(field issue_rc "$T/a.out")" 0
(umask 077; field token "$T/a.out" >"$T/a.jwt"; : >"$T/a-login.jwt"; cp "$DIR/inference-api.jwt" "$T/a-login.jwt" 2>/dev/null)
is "and the user verifies it: valid" "$(field verify_rc "$T/a.out") $(field verify_status "$T/a.out")" "0 valid"
exits_out "root verifies the token too" 0 "^Status: +valid" \
    "$COFFER" token verify - --aud inference-api <"$T/a.jwt"
is "the token names the user and the session" \
    "$("$COFFER" token verify - --json <"$T/a.jwt" 2>/dev/null | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["sub"], d["sid"])' 2>/dev/null)" \
    "$U $ID"
exits_out "the login's own token (INFERENCE_TOKEN_PATH) is valid" 0 "^Status: +valid" \
    "$COFFER" token verify - --aud inference-api <"$T/a-login.jwt"

ok_out "coffer lease ls --all shows the session lease of the user" "^$ID +session +$U " "$COFFER" lease ls --all
is "its object is session:$SVC" "$(lease_field "$ID" object)" "session:$SVC"
is "its owner is the user" "$(lease_field "$ID" owner)" "$U"
is "both tokens (login map, issued inside) are leases under it" "$(leases_of "$ID")" 3

# The same user, outside the login: a fresh audit session of their own (as
# another login would have) and the harness's (none).
# shellcheck disable=SC2016
OUTSIDE=(sh -c 'echo "$1" >/proc/self/loginuid && cat /proc/self/sessionid >"$2" && shift 2 && exec "$@"' sh
         "$U_UID" "$T/outside.sid" setpriv --reuid="$U_UID" --regid="$U_GID" --init-groups)
fails_with "the user outside the login is refused coffer get hf/token (exit 5)" 5 \
    "permission denied: read on secret:hf/token" "${OUTSIDE[@]}" "$COFFER" get hf/token
ok "that process was in another audit session" test -s "$T/outside.sid" -a "$(cat "$T/outside.sid")" != "$SID"
fails_with "and is refused a token" 5 "permission denied" "${OUTSIDE[@]}" "$COFFER" token issue --aud inference-api
fails_with "so is a process of the user with no audit session" 5 "permission denied: read on secret:hf/token" \
    setpriv --reuid="$U_UID" --regid="$U_GID" --init-groups "$COFFER" get hf/token

# ---- logout ----
exec 8>&-
ok "logout (stdin closed): the ssh client exits" wait_until 10 sh -c "! kill -0 $A_PID"
wait "$A_PID"; rc=$?
is "with status 0" "$rc" 0
ok "after logout the session lease is revoked (not listed)" wait_until 5 sh -c "[ -n '$ID' ] && ! '$COFFER' lease ls --all | grep -q '^$ID'"
ok "and nothing issued under it is listed" none_of "$ID"
ok "the session directory is gone" wait_until 5 test -n "$DIR" -a ! -e "$DIR"
exits_out "the token issued inside the login is reported revoked" 7 "^Status: +revoked" \
    "$COFFER" token verify - <"$T/a.jwt"
exits_out "so is the login's own token" 7 "^Status: +revoked" "$COFFER" token verify - <"$T/a-login.jwt"
ok "the audit log has the session-open (user, service $SVC)" sh -c \
    "grep '\"op\":\"session-open\"' '$T/audit.log' | grep '\"lease\":\"$ID\"' | grep -q 'user=$U service=$SVC'"
ok "and the session-end by close_session (rule closed)" \
    grep -q "\"op\":\"session-end\".*\"rule\":\"closed\".*\"lease\":\"$ID\"" "$T/audit.log"
ok "no secret value in the audit log" sh -c "! grep -qFf '$T/hf.value' '$T/audit.log'"
ok "no token in the audit log" sh -c "! grep -qFf '$T/a.jwt' '$T/audit.log' && ! grep -qFf '$T/a-login.jwt' '$T/audit.log'"
ok "no secret value in the daemon's or sshd's log" \
    sh -c "! grep -qFf '$T/hf.value' '$T/cofferd.log' && ! grep -qFf '$T/hf.value' '$T/sshd.log'"
ok "the audit log verifies" "$COFFER" audit verify "$T/audit.log"

# ---- a connection killed hard: no close_session ----
if login b; then
    ok "a second login comes up" true
else
    ok "a second login comes up" sh -c "sed 's/^/ssh: /' '$T/b.err' >&2; tail -n 10 '$T/sshd.log' >&2; false"
fi
B_PID=$LOGIN_PID
ID2=$(field id "$T/b.out") DIR2=$(field dir "$T/b.out") SID2=$(field sessionid "$T/b.out")
ok "it has its own session" test -n "$ID2" -a "$ID2" != "$ID" -a -d "$DIR2"
# The sshd processes of that login: the root monitor ([priv]) and the user's
# child, both in its audit session.
KILL=
for p in $(in_audit_session "$SID2"); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$SSHD_BIN" ] && KILL="$KILL $p"
done
note "killing the sshd processes of the second login:$KILL"
ok "its sshd processes are found (monitor and user child)" test "$(echo "$KILL" | wc -w)" -ge 2
# shellcheck disable=SC2086
kill -KILL $KILL 2>/dev/null
ok "with sshd killed (-9) the session still ends: its leases are revoked" wait_until 8 none_of "$ID2"
ok "and its directory removed" wait_until 5 test -n "$DIR2" -a ! -e "$DIR2"
ok "nothing is left in its audit session" wait_until 5 audit_session_empty "$SID2"
ok "the end is audited (session-ended, or closed)" \
    grep -qE "\"op\":\"session-end\".*\"rule\":\"(session-ended|closed)\".*\"lease\":\"$ID2\"" "$T/audit.log"
rule=$(grep "\"op\":\"session-end\".*\"lease\":\"$ID2\"" "$T/audit.log" | sed -n 's/.*"rule":"\([^"]*\)".*/\1/p' | head -1)
note "the killed login ended with rule '$rule'"
ok "the ssh client notices and exits" wait_until 10 sh -c "! kill -0 $B_PID"
exec 9>&-

ok "sshd is still serving" kill -0 "$SSHD_PID"
is "no lease is left" "$(lease_json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" 0

# ---- fail=closed: no daemon, no login ----
stop_daemon
( umask 077; exec timeout 20 "${SSH[@]}" "$REMOTE_ENV sh $(q "$T/inside.sh")" </dev/null >"$T/c.out" 2>"$T/c.err" )
rc=$?
note "ssh exit status without a daemon: $rc (OpenSSH exits 254 when the PAM session did not open)"
ok "with cofferd down, fail=closed refuses the login: the command never runs" \
    sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ] && ! grep -q '^uid=' '$T/c.out'"
ok "sshd says the PAM session failed" grep -q "pam_open_session" "$T/sshd.log"

done_testing
