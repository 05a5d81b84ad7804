#!/bin/bash
# Audit: one record per request (allowed, denied, refused while sealed,
# malformed), never a secret value, a MAC chain that `coffer audit verify`
# checks (edits, deletions, reorders, truncation, forgeries are found and the
# line named), and fail-closed when the log cannot be written.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
LOG="$T/audit.log"
lines() { wc -l <"$LOG"; }
last() {   # last FIELD...: fields of the last record, space-separated (peer fields looked up nested too)
    "$PY" - "$LOG" "$@" <<'EOF'
import json, sys
rec = json.loads(open(sys.argv[1], "rb").read().splitlines()[-1])
def find(r, k):
    if isinstance(r, dict):
        if k in r:
            return r[k]
        for v in r.values():
            x = find(v, k)
            if x is not None:
                return x
    return None
print(" ".join(str(find(rec, k)) for k in sys.argv[2:]))
EOF
}
one_record() {   # one_record DESCRIPTION OP DECISION COMMAND...: exactly one new record, with that op and decision
    local d=$1 op=$2 dec=$3 before after got; shift 3
    before=$(lines)
    "$@" >"$T/cmd.out" 2>"$T/cmd.err" </dev/null
    after=$(lines)
    got=$(last op decision)
    is "$d: one record, op=$op decision=$dec" "$((after - before)) $got" "1 $op $dec"
}

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
SENTINEL="S3nt1nel-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$SENTINEL" >"$T/sentinel"

# ---- one record per request ----
one_record "status" status allow "$COFFER" status
one_record "whoami" whoami allow "$COFFER" whoami
one_record "put" put allow "$COFFER" put audit/secret --file "$T/sentinel"
one_record "get" get allow "$COFFER" get audit/secret
one_record "get --json" get allow "$COFFER" get audit/secret --json
one_record "get of a missing secret" get allow "$COFFER" get audit/missing
is "the failed get's record carries its result (ENOENT)" "$(last result)" ENOENT
one_record "ls" list allow "$COFFER" ls
one_record "versions" versions allow "$COFFER" versions audit/secret
one_record "rm" delete allow "$COFFER" rm audit/secret
one_record "undelete" undelete allow "$COFFER" undelete audit/secret --version 1
one_record "rotate" rotate allow "$COFFER" operator rotate
one_record "a malformed frame" protocol-error deny "$RAWCLIENT" "$COFFER_SOCKET" --hex deadbeefdeadbeefdeadbeefdeadbeef
if [ "$(id -u)" = 0 ]; then
    one_record "a denied get as nobody" get deny as_nobody "$COFFER" get audit/secret
    is "the denied record names the caller's uid" "$(last uid)" 65534
else
    skip "a denied get as nobody" "needs root"
    skip "the denied record names the caller's uid" "needs root"
fi
ok "records name the object (secret:audit/secret)" grep -q '"secret:audit/secret"' "$LOG"

# ---- never a secret value ----
b64=$(base64 -w0 <"$T/sentinel")
hex=$(od -An -tx1 <"$T/sentinel" | tr -d ' \n')
ok "the secret value is not in the audit log (raw, base64 or hex)" \
    sh -c '! grep -qF -e "$1" -e "$2" -e "$3" "$4"' _ "$SENTINEL" "$b64" "$hex" "$LOG"
ok "the secret value is not in the daemon's log" \
    sh -c '! grep -qF -e "$1" -e "$2" -e "$3" "$4"' _ "$SENTINEL" "$b64" "$hex" "$T/cofferd.log"
ok "every line of the audit log is a JSON object with seq, prev and mac" "$PY" -c '
import json, sys
for n, l in enumerate(open(sys.argv[1], "rb"), 1):
    r = json.loads(l)
    assert all(k in r for k in ("seq", "prev", "mac")), "line %d lacks seq/prev/mac" % n' "$LOG"

# ---- verify ----
ok_out "audit verify passes on the live log" 'audit log intact: [0-9]+ records' "$COFFER" audit verify

# Records written while sealed verify after unseal (and across a restart).
"$COFFER" operator seal >/dev/null
before=$(lines)
"$COFFER" status >/dev/null
"$COFFER" get audit/secret >/dev/null 2>&1
ok "while sealed, status and a refused get are recorded" test "$(( $(lines) - before ))" -ge 2
is "the refused get is in the log" "$(last op)" get
ok "unseal" unseal_keyfile
ok_out "audit verify passes over the sealed records" 'audit log intact' "$COFFER" audit verify
stop_daemon
start_daemon || { echo "Bail out! cofferd did not restart"; exit 1; }
"$COFFER" status >/dev/null; "$COFFER" get audit/secret >/dev/null 2>&1
unseal_keyfile
ok_out "... and over records written sealed after a restart" 'audit log intact' "$COFFER" audit verify

# Damaged copies: each is found, and the line named.
n=$(lines)
mid=$((n / 2))
tamper() {   # tamper KIND: write $T/copy.KIND from the live log
    "$PY" - "$LOG" "$T/copy.$1" "$1" "$mid" <<'EOF'
import json, sys
src, dst, kind, mid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lines = open(src, "rb").read().splitlines(keepends=True)
i = mid - 1
if kind == "edit":        # change one field of one record, keep it valid JSON
    r = json.loads(lines[i]); r["op"] = "status" if r.get("op") != "status" else "get"
    lines[i] = (json.dumps(r, separators=(",", ":")) + "\n").encode()
elif kind == "flip":      # one character of the MAC
    r = json.loads(lines[i]); m = r["mac"]; r["mac"] = ("0" if m[0] != "0" else "1") + m[1:]
    lines[i] = (json.dumps(r, separators=(",", ":")) + "\n").encode()
elif kind == "delete":
    del lines[i]
elif kind == "swap":
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
elif kind == "duplicate":
    lines.insert(i + 1, lines[i])
elif kind == "truncate":  # cut the file in the middle of its last record
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
open(dst, "wb").write(b"".join(lines))
EOF
}
for k in edit flip delete swap duplicate truncate; do tamper $k; done
fails_with "an edited record is detected (exit 7), naming line $mid" 7 "line $mid\\b" "$COFFER" audit verify "$T/copy.edit"
fails_with "a record with a changed MAC is detected, naming line $mid" 7 "line $mid\\b" "$COFFER" audit verify "$T/copy.flip"
fails_with "a deleted record is detected, naming line $mid" 7 "line $mid\\b" "$COFFER" audit verify "$T/copy.delete"
fails_with "two swapped records are detected, naming line $mid" 7 "line $mid\\b" "$COFFER" audit verify "$T/copy.swap"
fails_with "a duplicated record is detected, naming line $((mid + 1))" 7 "line $((mid + 1))\\b" \
    "$COFFER" audit verify "$T/copy.duplicate"
fails_with "a copy cut inside its last record is detected, naming line $n" 7 "line $n\\b" \
    "$COFFER" audit verify "$T/copy.truncate"
cp "$LOG" "$T/copy.intact"
ok_out "an intact copy verifies" 'audit log intact' "$COFFER" audit verify "$T/copy.intact"

# Truncating the live log itself (the daemon knows its chain head).
last_len=$(tail -n 1 "$LOG" | wc -c)
truncate -s "-$last_len" "$LOG"
fails_with "truncating the live log by one record is detected (exit 7)" 7 'truncated' "$COFFER" audit verify

# ---- fail closed: an audit log that cannot be written ----
if [ "$(id -u)" != 0 ]; then
    skip "an unwritable audit log fails requests" "needs root"
    done_testing
    exit
fi
AFS="$T/afs"
mkdir -p "$AFS"
if ! mount -t tmpfs -o size=64k,mode=0700 tmpfs "$AFS" 2>/dev/null; then
    skip "an unwritable audit log fails requests" "cannot mount a tmpfs here"
    done_testing
    exit
fi
CLEANUP_EXTRA="umount -l '$AFS' 2>/dev/null"
reset_state
start_daemon --audit-log "$AFS/audit.log" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile
printf 'kept' | "$COFFER" put full/kept 2>/dev/null
"$COFFER" token issue --aud full-rev >"$T/rev.jwt" 2>/dev/null
REV=$("$COFFER" lease ls --json | "$PY" -c 'import json,sys; print([l["id"] for l in json.load(sys.stdin) if l["object"]=="token:full-rev"][0])')
dd if=/dev/zero of="$AFS/fill" bs=1k 2>/dev/null
# The log's last block may still have room: a few more records fill it.
for i in $(seq 500); do "$COFFER" status >/dev/null 2>&1 || break; done
fails_with "audit log full: even status is refused, saying why" 1 'audit log cannot be written' "$COFFER" status
fails_with "audit log full: a put fails with a clear message" 1 'audit log cannot be written' \
    sh -c 'printf lost | "$1" put full/lost' _ "$COFFER"
fails_with "audit log full: a get fails too (fail closed)" 1 'audit log cannot be written' "$COFFER" get full/kept
fails_with "audit log full: a token issue fails too" 1 'audit log cannot be written' "$COFFER" token issue --aud full
fails_with "audit log full: a revoke fails too, saying why" 1 'audit log cannot be written' "$COFFER" lease revoke "$REV"
rm -f "$AFS/fill"
ok "space back: the failed token issue left no live lease behind" sh -c "! '$COFFER' lease ls | grep -q 'token:full'"
fails_with "space back: the failed put wrote nothing to the store" 6 'no such secret' "$COFFER" get full/lost
ok_out "space back: requests are served again" '^kept$' "$COFFER" get full/kept
# A revocation is not taken back by the rollback: it was in force at once,
# and it was saved on its own.
exits_out "the token of the failed revoke verifies as revoked" 7 '^Status: +revoked' "$COFFER" token verify - <"$T/rev.jwt"
ok "...and the log says the revocation was kept" grep -q "revocation(s) of a request that failed .* were kept and saved" "$T/cofferd.log"
stop_daemon
start_daemon --audit-log "$AFS/audit.log" && unseal_keyfile
exits_out "...and still after a restart (the store has it)" 7 '^Status: +revoked' "$COFFER" token verify - <"$T/rev.jwt"

done_testing
