#!/bin/bash
# Leases and login sessions through the daemon, without PAM (tests/pam covers
# pam_coffer): a session opened by root for a user gets a private directory of
# credentials; processes in its audit session are "in a login session"; closing,
# expiry, the audit session ending, and a restart (with expiry while down) all
# revoke it and everything under it. Lease listing, renewal, revocation, caps,
# and the integrity check of the lease rows.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3

S=$$
U=cfses$S U2=cfsec$S   # U2: only for the caps
useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$U" || { echo "Bail out! useradd failed"; exit 1; }
useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$U2" || { userdel "$U"; echo "Bail out! useradd failed"; exit 1; }
CLEANUP_EXTRA="pkill -u $U 2>/dev/null; pkill -u $U2 2>/dev/null; userdel $U 2>/dev/null; userdel $U2 2>/dev/null"
AS_U="setpriv --reuid=$U --regid=nogroup --clear-groups"
AS_U2="setpriv --reuid=$U2 --regid=nogroup --clear-groups"

# A tmpfs for the session directories, as /run is on a real host.
mkdir -p "$T/run"
if mount -t tmpfs -o mode=0755,size=8m cofferrun "$T/run" 2>/dev/null; then
    CLEANUP_EXTRA="umount $T/run 2>/dev/null; $CLEANUP_EXTRA"
fi
SD=$T/run/sessions

cat >"$T/login.map" <<EOF
# ENV_VAR  FILE  OBJECT
HF_TOKEN_PATH         hf-token            secret:hf/token
INFERENCE_TOKEN_PATH  inference-api.jwt   token:inference-api ttl=1h
DB_PASSWORD_PATH      db-password         secret:db/password
EOF
printf 'session_check_interval = 1\nmax_leases_per_uid = 100\n' >"$T/cofferd.conf"
chmod 0644 "$T/login.map" "$T/cofferd.conf"
cat >"$POLICY_DIR/10-ml.policy" <<EOF
allow read  secret:hf/*              user:$U session:login
allow issue token:inference-api      user:$U session:login ttl<=2h
allow issue token:batch              user:$U
allow issue token:batch              user:$U2
EOF
chmod 0644 "$POLICY_DIR/10-ml.policy"
DARGS=(--config "$T/cofferd.conf" --session-dir "$SD" --login-map "$T/login.map")
start_daemon "${DARGS[@]}" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'hf_s3cret_value' | "$COFFER" put hf/token >/dev/null
printf 'db-pass' | "$COFFER" put db/password >/dev/null

field() { sed -n "s/^$1=//p" "$2"; }
mode_of() { stat -c '%a %U' "$1"; }
lease_ids() { "$COFFER" lease ls --all --json | "$PY" -c 'import json,sys; print(" ".join(l["id"] for l in json.load(sys.stdin)))'; }

# A holder: a process in a fresh audit session (as pam_loginuid makes) that
# opens a coffer session and then stays, like sshd's session process.
start_holder() {   # start_holder NAME [sessiontool options]: $T/NAME.out, pid in $T/NAME.pid
    local name=$1; shift
    sh -c 'echo 1234 >/proc/self/loginuid && "$0" open "$@" >"'"$T/$name.out"'" 2>"'"$T/$name.err"'"; exec sleep 1000' \
        "$SESSIONTOOL" "$U" "$@" &
    echo $! >"$T/$name.pid"
    wait_until 5 grep -q '^id=' "$T/$name.out"
}
# ---- open ----
start_holder h1 --service sshd --tty pts/7 --rhost 127.0.0.1
ID=$(field id "$T/h1.out") DIR=$(field dir "$T/h1.out")
ok "session open returns a lease id" grep -qE '^id=[0-9a-f]{32}$' "$T/h1.out"
is "the directory is SESSION_DIR/ID" "$DIR" "$SD/$ID"
is "the directory belongs to the user, mode 0500" "$(mode_of "$DIR")" "500 $U"
is "the secret file is the user's, mode 0400" "$(mode_of "$DIR/hf-token")" "400 $U"
is "the token file is the user's, mode 0400" "$(mode_of "$DIR/inference-api.jwt")" "400 $U"
ok "the secret file holds the secret" sh -c "printf 'hf_s3cret_value' | cmp -s - '$DIR/hf-token'"
is "HF_TOKEN_PATH points at it" "$(field HF_TOKEN_PATH "$T/h1.out")" "$DIR/hf-token"
is "a credential policy does not allow is not delivered (db/password)" "$(field denied "$T/h1.out")" 1
ok "no file for it either" test ! -e "$DIR/db-password"
ok "the user can read their file" $AS_U cat "$DIR/hf-token"
ok "another user cannot" sh -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups cat '$DIR/hf-token' 2>/dev/null"
ok_out "lease ls --all shows the session lease" "^$ID +session +$U " "$COFFER" lease ls --all
ok_out "and the login token under it" "token +$U .* ${ID:0:20} +token:inference-api" "$COFFER" lease ls --all
is "the token in the file is a valid coffer token for the user" \
    "$("$COFFER" token verify - --aud inference-api --json <"$DIR/inference-api.jwt" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["sub"], d["sid"])')" \
    "valid $U $ID"
ok "the open is audited with the user, service and tty (no value)" \
    sh -c "grep '\"op\":\"session-open\"' '$T/audit.log' | grep -q 'user=$U service=sshd tty=pts/7' && ! grep -q hf_s3cret_value '$T/audit.log'"

# ---- the session ends without close_session (sshd killed) ----
cp "$DIR/inference-api.jwt" "$T/h1.jwt"
HPID=$(cat "$T/h1.pid")
kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null
# (killing the holder ends the audit session; the sweep must notice)
ok "when the audit session's last process is gone, the session is revoked" \
    wait_until 5 sh -c "! '$COFFER' lease ls --all | grep -q '^$ID'"
ok "and its directory is removed" wait_until 5 test ! -e "$DIR"
exits_out "the login token is reported revoked" 7 '^Status: +revoked' "$COFFER" token verify - <"$T/h1.jwt"
ok "the end is audited as session-ended" grep -q "\"op\":\"session-end\".*\"rule\":\"session-ended\".*\"lease\":\"$ID\"" "$T/audit.log"

# A session whose commands run inside its audit session: one shell that opens
# the session and then runs the checks, as a login shell would.
cat >"$T/inside.sh" <<EOF
#!/bin/sh
echo 1234 >/proc/self/loginuid || exit 90
"$SESSIONTOOL" open "$U" --service sshd --tty pts/8 >"$T/in.out" || exit 91
D=\$(sed -n 's/^dir=//p' "$T/in.out")
$AS_U "$COFFER" get hf/token >"$T/in.get" 2>"$T/in.get.err"; echo "get=\$?" >"$T/in.rc"
$AS_U "$COFFER" token issue --aud inference-api >"$T/in.tok" 2>"$T/in.tok.err"; echo "tok=\$?" >>"$T/in.rc"
$AS_U "$COFFER" token issue --aud inference-api --ttl 3h >/dev/null 2>"$T/in.ttl.err"; echo "ttl=\$?" >>"$T/in.rc"
# close from a different process of the same audit session, by match
"$SESSIONTOOL" close-match "$U" --service sshd --tty pts/8 >"$T/in.close" 2>&1
"$SESSIONTOOL" close-match "$U" --service sshd --tty pts/8 >"$T/in.close2" 2>&1
echo "dir=\$D" >>"$T/in.rc"
EOF
chmod 0755 "$T/inside.sh"
ok "a login shell runs" sh "$T/inside.sh"
ok "inside the session the user reads a session:login secret" grep -qx 'get=0' "$T/in.rc"
ok "the value is right" grep -qx 'hf_s3cret_value' "$T/in.get"
ok "inside the session the user gets a token" grep -qx 'tok=0' "$T/in.rc"
ok "a ttl over the policy bound (ttl<=2h) is refused" \
    sh -c "grep -qx 'ttl=1' '$T/in.rc' && grep -q 'longer than allowed' '$T/in.ttl.err'"
fails_with "outside the session the same user is refused" 5 "permission denied: read on secret:hf/token" \
    $AS_U "$COFFER" get hf/token
ok "close by matching user/service/tty from another process works" grep -qx 'closed=1' "$T/in.close"
ok "a second close finds nothing and is not an error" grep -qx 'closed=0' "$T/in.close2"
IND=$(sed -n 's/^dir=//p' "$T/in.rc")
ok "the closed session's directory is gone" test ! -e "$IND"
exits_out "its token is reported revoked" 7 '^Status: +revoked' "$COFFER" token verify - <"$T/in.tok"
JTI=$("$COFFER" token verify - --json <"$T/in.tok" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jti"])')
ok "the revocation list names it" "$PY" -c "import json,sys; d=json.load(open('$T/revoked.json')); sys.exit(0 if any(r['jti']=='$JTI' for r in d['revoked']) else 1)"

# ---- refusals ----
fails_with "only root may open sessions" 5 "only root \\(pam_coffer\\) may open" \
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$SESSIONTOOL" open "$U"
fails_with "an unknown user is refused" 6 "unknown user 'no-such-user-$S'" "$SESSIONTOOL" open "no-such-user-$S"
fails_with "a control character in the tty is refused" 1 "control characters" "$SESSIONTOOL" open "$U" --tty "$(printf 'a\tb')"
fails_with "closing by a malformed id is refused" 1 "lease id is 32" "$SESSIONTOOL" close "nothex"

# ---- the process that opened the session dies (sshd killed) ----
# cofferd watches it (pidfd) and looks at once, not at the next sweep.
printf 'session_check_interval = 1h\nmax_leases_per_uid = 100\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"
sh -c 'echo 1234 >/proc/self/loginuid && exec "$0" open "$@"' "$SESSIONTOOL" "$U" --service sshd --tty pts/9 --hold \
    >"$T/o1.out" 2>&1 &
OPID=$!
wait_until 5 grep -q '^id=' "$T/o1.out"
OID=$(field id "$T/o1.out")
kill -KILL "$OPID"; wait "$OPID" 2>/dev/null
ok "when the process that opened a session is killed, the session ends without waiting for the sweep (1 h)" \
    wait_until 20 sh -c "! '$COFFER' lease ls --all | grep -q '^$OID'"
ok "...audited as session-ended" grep -q "\"op\":\"session-end\".*\"rule\":\"session-ended\".*\"lease\":\"$OID\"" "$T/audit.log"
# The opener dies but the session has another process (a shell): it stays.
OPENER=$T/o2.opener sh -c 'echo 1234 >/proc/self/loginuid && { "$0" open "$@" & echo $! >"$OPENER"; exec sleep 1000; }' \
    "$SESSIONTOOL" "$U" --service sshd --tty pts/10 --hold >"$T/o2.out" 2>&1 &
SPID=$!
wait_until 5 grep -q '^id=' "$T/o2.out"
OID2=$(field id "$T/o2.out")
kill -KILL "$(cat "$T/o2.opener")"
sleep 2
ok "a session whose opener died but which still has a process stays open" \
    sh -c "'$COFFER' lease ls --all | grep -q '^$OID2'"
ok "...until it is closed" "$SESSIONTOOL" close "$OID2"
kill "$SPID"; wait "$SPID" 2>/dev/null
printf 'session_check_interval = 1\nmax_leases_per_uid = 100\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"

# ---- expiry, renewal ----
start_holder h2 --ttl 2
ID2=$(field id "$T/h2.out") DIR2=$(field dir "$T/h2.out")
ok "a session with --ttl 2 expires" wait_until 6 sh -c "! '$COFFER' lease ls --all | grep -q '^$ID2'"
ok "and its directory goes with it" test ! -e "$DIR2"
ok "expiry is audited" grep -q "\"op\":\"session-end\".*\"rule\":\"expired\".*\"lease\":\"$ID2\"" "$T/audit.log"
kill "$(cat "$T/h2.pid")" 2>/dev/null

start_holder h3 --ttl 30
ID3=$(field id "$T/h3.out")
before=$(date +%s)
ok_out "the owner renews their session" "^$ID3 expires " $AS_U "$COFFER" lease renew "$ID3" --ttl 300
exp=$("$COFFER" lease ls --all --json | "$PY" -c "import json,sys; print([l['expires'] for l in json.load(sys.stdin) if l['id']=='$ID3'][0])")
ok "renew counts from now (now+300)" test "$exp" -ge $((before + 300)) -a "$exp" -le $(( $(date +%s) + 300 ))
fails_with "another user cannot renew it (it is not theirs)" 6 "no lease $ID3 of yours" \
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFER" lease renew "$ID3"
ok "...and the attempt is audited as a denial" \
    sh -c "grep '\"op\":\"lease-renew\"' '$T/audit.log' | grep '\"lease\":\"$ID3\"' | grep -q '\"decision\":\"deny\"'"
ok_out "renew without --ttl gives the session's own ttl again (30 s), not a growing one" "^$ID3 expires " \
    $AS_U "$COFFER" lease renew "$ID3"
exp2=$("$COFFER" lease ls --all --json | "$PY" -c "import json,sys; print([l['expires'] for l in json.load(sys.stdin) if l['id']=='$ID3'][0])")
ok "...(expires within now+30)" test "$exp2" -le $(( $(date +%s) + 30 ))
TOK=$($AS_U "$COFFER" token issue --aud batch --ttl 10m)
TID=$("$COFFER" lease ls --all --json | "$PY" -c "import json,sys; print([l['id'] for l in json.load(sys.stdin) if l['object']=='token:batch'][0])")
fails_with "a token lease is not renewable" 1 "is not renewable" $AS_U "$COFFER" lease renew "$TID"
ok_out "the user sees their own leases" "$TID" $AS_U "$COFFER" lease ls
fails_with "a user may not list everyone's" 5 "permission denied: admin on lease:all" $AS_U "$COFFER" lease ls --all
ok "nobody sees none of them" sh -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups '$COFFER' lease ls | grep -q ."
fails_with "a user may not revoke by prefix" 5 "admin on lease:all" $AS_U "$COFFER" lease revoke --prefix token/
ok_out "the owner revokes their token" "^revoked 1 lease" $AS_U "$COFFER" lease revoke "$TID"
exits_out "which then verifies as revoked" 7 "^Status: +revoked" "$COFFER" token verify "$TOK"

# ---- caps ----
printf 'session_check_interval = 1\nmax_leases_per_uid = 6\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"
for i in 1 2 3 4 5 6; do $AS_U2 "$COFFER" token issue --aud batch --ttl 10m >/dev/null 2>&1; done
fails_with "past max_leases_per_uid (6) issuing is refused" 1 "already hold 6 live leases \\(max_leases_per_uid\\)" \
    $AS_U2 "$COFFER" token issue --aud batch
ok_out "an admin revokes by prefix" "^revoked [0-9]+ lease" "$COFFER" lease revoke --prefix token/token:batch
# Revoked tokens are kept (listed as revoked) until they would have expired:
# they count, apart, or issue-and-revoke would grow the daemon without bound.
fails_with "revoked tokens count toward a cap of their own until they expire" 1 \
    "already hold 6 revoked tokens or grants, kept until they would have expired \\(max_leases_per_uid counts them apart from the 0 live ones\\)" \
    $AS_U2 "$COFFER" token issue --aud batch
printf 'session_check_interval = 1\nmax_leases_per_uid = 100\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"
ok "with a higher cap (reload) the user may issue again" $AS_U2 "$COFFER" token issue --aud batch --ttl 10m
fails_with "a prefix with an unknown kind is refused" 1 "a prefix is KIND/" "$COFFER" lease revoke --prefix bogus/

# ---- a session directory its user filled ----
# The directory is the user's: they can make it writable and fill it. Its
# removal must neither stall the daemon nor leave anything, however deep.
start_holder h6
ID6=$(field id "$T/h6.out") DIR6=$(field dir "$T/h6.out")
$AS_U sh -c 'chmod u+w "$1" && mkdir "$1/junk" && cd "$1/junk" && seq 1 3000 | xargs touch &&
    cd "$1" && i=0 && while [ $i -lt 150 ]; do mkdir d && cd d || exit 1; i=$((i + 1)); done && touch leaf' _ "$DIR6"
ok "the user filled their session directory (3000 files, 150 levels deep)" test -d "$DIR6/junk" -a -d "$DIR6/d/d/d"
"$SESSIONTOOL" close "$ID6" >/dev/null
ok "the daemon answers while it removes it" "$COFFER" status
ok "the filled directory is removed completely, deep levels included" wait_until 30 test ! -e "$DIR6"
[ -e "$DIR6" ] && { tail -5 "$T/cofferd.log"; ls -la "$DIR6"; find "$DIR6" | wc -l; } 2>&1 | sed "s/^/# left: /"
ok "...and the user was shut out of it at once (it is not theirs any more)" sh -c "! $AS_U ls '$DIR6' 2>/dev/null"
kill "$(cat "$T/h6.pid")" 2>/dev/null

# ---- restart ----
start_holder h4 --ttl 3
ID4=$(field id "$T/h4.out") DIR4=$(field dir "$T/h4.out")
# Everything but the short session and the token under it.
before_ids=$("$COFFER" lease ls --all --json | "$PY" -c "import json,sys; print(' '.join(sorted(l['id'] for l in json.load(sys.stdin) if '$ID4' not in (l['id'], l['parent']))))")
stop_daemon
# What a daemon stopped in the middle of a removal leaves: a directory named
# like a session that is not open. Anything else there is not cofferd's.
ORPHAN=$SD/0123456789abcdef0123456789abcdef
mkdir -p "$ORPHAN/sub" "$SD/not-a-session" && touch "$ORPHAN/sub/f" "$SD/not-a-session/f"
sleep 4
start_daemon "${DARGS[@]}" && unseal_keyfile
ok "at start, a session directory without an open session is removed" test ! -e "$ORPHAN"
ok "...but not what cofferd did not make" test -e "$SD/not-a-session/f"
rm -rf "$SD/not-a-session"
after_ids=$(lease_ids | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')
is "leases survive a restart" "$after_ids" "$before_ids"
ok "a session that expired while the daemon was down is revoked at start" sh -c "! '$COFFER' lease ls --all | grep -q '^$ID4'"
ok "and its directory removed" test ! -e "$DIR4"
kill "$(cat "$T/h4.pid")" 2>/dev/null

# ---- a session lease from an earlier boot ----
start_holder h5
ID5=$(field id "$T/h5.out")
stop_daemon
"$PY" - "$T/state/coffer.db" "$ID5" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE leases SET data = replace(data, 'boot=', 'boot=0') WHERE id = ?", (bytes.fromhex(sys.argv[2]),))
db.commit()
PYEOF
mark=$(log_mark)
start_daemon "${DARGS[@]}" && unseal_keyfile
ok "a session lease from an earlier boot is revoked at start (audit session ids start over at boot)" \
    sh -c "! '$COFFER' lease ls --all | grep -q '^$ID5'"
ok "...with what was under it, and the log says so" log_has "$mark" "[0-9]+ lease\\(s\\) of login sessions from an earlier boot revoked"
kill "$(cat "$T/h5.pid")" 2>/dev/null

# ---- integrity of the lease rows ----
stop_daemon
"$PY" - "$T/state/coffer.db" "$ID3" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE leases SET expires = expires + 86400 WHERE id = ?", (bytes.fromhex(sys.argv[2]),))
db.commit()
PYEOF
start_daemon "${DARGS[@]}" && unseal_keyfile
ok "a lease row edited while the daemon was down is revoked at unseal" sh -c "! '$COFFER' lease ls --all | grep -q '^$ID3'"
ok "and the log says why" grep -q "failed their integrity check" "$T/cofferd.log"
kill "$(cat "$T/h3.pid")" 2>/dev/null

# ---- a runtime directory cofferd makes itself is reachable by users ----
stop_daemon
R2=$T/rt2
COFFER_SOCKET=$R2/coffer.sock
start_daemon --session-dir "$SD" 2>/dev/null
is "a runtime directory cofferd creates is 0755 whatever its umask" "$(stat -c %a "$R2" 2>/dev/null)" 755
stop_daemon
COFFER_SOCKET=$T/coffer.sock
start_daemon "${DARGS[@]}" && unseal_keyfile

# ---- sealed ----
"$COFFER" operator seal >/dev/null
fails_with "lease ls on a sealed daemon says to unseal" 4 "sealed: run \`coffer operator unseal\`" "$COFFER" lease ls
fails_with "session open on a sealed daemon says to unseal" 4 "sealed" "$SESSIONTOOL" open "$U"
unseal_keyfile

done_testing
