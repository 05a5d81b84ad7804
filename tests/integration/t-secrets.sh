#!/bin/bash
# Static secrets: binary values, size limit, versions, check-and-set, pruning,
# delete/undelete/destroy, listing, names; and a tampered store (altered,
# moved and swapped ciphertext) failing with an integrity error.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
DB="$T/state/coffer.db"
put() { printf '%s' "$2" | "$COFFER" put "$1" "${@:3}"; }
value_is() { local want=$1; shift; [ "$("$COFFER" get "$@")" = "$want" ]; }   # value_is VALUE NAME [--version N]
refused() {   # refused DESCRIPTION PATTERN COMMAND...  (any failure exit, stderr matches)
    local d=$1 pat=$2; shift 2
    TAP_N=$((TAP_N + 1))
    "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    if [ "$rc" -ne 0 ] && grep -qE -- "$pat" "$T/last.err"; then
        echo "ok $TAP_N - $d (exit $rc)"
    else
        echo "not ok $TAP_N - $d (exit $rc, wanted a failure and /$pat/)"
        sed 's/^/#   /' "$T/last.err" | head -5
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }

# ---- binary values and size ----
$PY -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 3 + b"\0\0end\0")' >"$T/bin"
ok "a value with all 256 byte values and NULs round-trips (stdin)" \
    sh -c '"$1" put bin/stdin <"$2" && "$1" get bin/stdin >"$2.out" && cmp "$2" "$2.out"' _ "$COFFER" "$T/bin"
ok "the same value round-trips with --file" \
    sh -c '"$1" put bin/file --file "$2" && "$1" get bin/file >"$2.out2" && cmp "$2" "$2.out2"' _ "$COFFER" "$T/bin"
ok "get --json value_base64 decodes to the exact bytes" \
    sh -c '"$1" get bin/file --json | "$3" -c "import sys,json,base64; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)[\"value_base64\"]))" >"$2.json" && cmp "$2" "$2.json"' \
    _ "$COFFER" "$T/bin" "$PY"
head -c 1048576 /dev/urandom >"$T/1mib"
head -c 1048577 /dev/urandom >"$T/1mib+1"
ok "exactly 1 MiB is stored and read back" \
    sh -c '"$1" put big/max --file "$2" && "$1" get big/max >"$2.out" && cmp "$2" "$2.out"' _ "$COFFER" "$T/1mib"
fails_with "1 MiB + 1 from stdin is refused by the CLI with a clear message (exit 2)" 2 'larger than 1 MiB' \
    sh -c '"$1" put big/over <"$2"' _ "$COFFER" "$T/1mib+1"
fails_with "1 MiB + 1 with --file is refused too" 2 'larger than 1 MiB' "$COFFER" put big/over --file "$T/1mib+1"
fails_with "nothing was stored for the refused value (exit 6)" 6 'no such secret' "$COFFER" get big/over

# ---- versions, cas, pruning ----
for v in one two three; do put app/db "db-$v" 2>/dev/null; done
ok_out "versions lists 3 live versions" '^3 .* live$' "$COFFER" versions app/db
is "versions --json has 3 entries" "$("$COFFER" versions app/db --json | grep -o '"version":' | wc -l)" 3
ok "get returns the newest version" value_is db-three app/db
ok "get --version 1 returns the first value" value_is db-one app/db --version 1
fails_with "get --version 9 of a 3-version secret: not found (exit 6)" 6 'no such secret or version' \
    "$COFFER" get app/db --version 9
fails_with "put --cas 3 (the current version) succeeds as version 4" 0 'stored app/db version 4' put app/db db-four --cas 3
fails_with "put --cas 3 again: check-and-set conflict (exit 8)" 8 'check-and-set' put app/db db-stale --cas 3
ok "the conflicting put changed nothing" value_is db-four app/db
fails_with "put --cas 0 on an existing secret: conflict (exit 8)" 8 'check-and-set' put app/db x --cas 0
fails_with "put --cas 0 on a new name creates it" 0 'stored app/new version 1' put app/new fresh --cas 0
for v in 1 2 3 4; do put prune/x "p$v" --max-versions 2 2>/dev/null; done
is "--max-versions 2 keeps only the newest two versions" \
    "$("$COFFER" versions prune/x --json | grep -o '"version":[0-9]*' | tr '\n' ' ')" '"version":3 "version":4 '
fails_with "a pruned version is gone (exit 6)" 6 'no such' "$COFFER" get prune/x --version 1
ok "the newest kept version reads back" value_is p4 prune/x

# ---- rm, undelete, destroy ----
fails_with "rm soft-deletes the newest version and says how to undo" 0 'deleted app/db version 4 \(undo: coffer undelete' \
    "$COFFER" rm app/db
fails_with "after rm, get finds nothing: an older value does not quietly come back (exit 6)" 6 'version 4 is deleted \(undelete restores it\)' \
    "$COFFER" get app/db
ok "after rm, the older version 3 is still readable with --version" value_is db-three app/db --version 3
fails_with "the deleted version is not readable (exit 6)" 6 'deleted|no such secret or version' "$COFFER" get app/db --version 4
ok_out "versions shows version 4 deleted" '^4 .* deleted$' "$COFFER" versions app/db
ok "undelete --version 4" "$COFFER" undelete app/db --version 4
ok "after undelete the value is back" value_is db-four app/db
ok "destroy --version 4" "$COFFER" destroy app/db --version 4
fails_with "a destroyed version is unreadable (exit 6)" 6 'destroyed|no such secret or version' "$COFFER" get app/db --version 4
refused "undelete cannot bring back a destroyed version" '.' "$COFFER" undelete app/db --version 4
fails_with "and it stays unreadable" 6 'destroyed|no such secret or version' "$COFFER" get app/db --version 4
ok_out "versions shows version 4 destroyed" '^4 .* destroyed$' "$COFFER" versions app/db
fails_with "with its newest version destroyed, get finds nothing (exit 6)" 6 'version 4 was destroyed' "$COFFER" get app/db
ok "ls no longer lists it" sh -c '! "$1" ls app/ | grep -qx app/db' _ "$COFFER"
fails_with "undelete without --version is a usage error (exit 2)" 2 'needs --version' "$COFFER" undelete app/db
fails_with "an unknown secret: not found (exit 6)" 6 'no such secret' "$COFFER" get no/such/secret
fails_with "rm of an unknown secret: not found (exit 6)" 6 'no such secret|no live version' "$COFFER" rm no/such/secret

# ---- ls ----
for n in ls/a/one ls/a/two ls/b/three ls/c; do put "$n" v 2>/dev/null; done
put ls/gone v 2>/dev/null; "$COFFER" rm ls/gone 2>/dev/null
is "ls ls/a/ lists exactly the names under ls/a/" "$("$COFFER" ls ls/a/ | tr '\n' ' ')" "ls/a/one ls/a/two "
is "ls ls/ lists all four live names, sorted, not the deleted one" "$("$COFFER" ls ls/ | tr '\n' ' ')" \
    "ls/a/one ls/a/two ls/b/three ls/c "
ok_out "ls --json is a JSON array" '^\["ls/a/one","ls/a/two"\]$' "$COFFER" ls ls/a/ --json
ok "ls without a prefix includes names from every tree" \
    sh -c '"$1" ls | grep -qx app/new && "$1" ls | grep -qx ls/c' _ "$COFFER"

# ---- names ----
for bad in '../x' 'a//b' '/a' 'a/' 'a b' 'a/./b' 'a/../b' "$(printf 'n%.0s' $(seq 300))"; do
    refused "invalid name '${bad:0:20}' is refused with the charset explained" 'A-Z a-z 0-9 \. _ -' put "$bad" v
done
ok "a 256-character name is accepted" put "$(printf 'n%.0s' $(seq 256))" v
ok "names like db/train-ro and A.b_c-9/x..y are accepted" \
    sh -c 'printf v | "$1" put db/train-ro && printf v | "$1" put A.b_c-9/x..y' _ "$COFFER"

# ---- tampering: stop the daemon, edit the SQLite file, read back ----
put tamper/alter original-a 2>/dev/null
put tamper/src value-of-src 2>/dev/null
put tamper/dst value-of-dst 2>/dev/null
put tamper/ver first 2>/dev/null; put tamper/ver second 2>/dev/null
put tamper/keep untouched 2>/dev/null
stop_daemon
sql() { "$PY" - "$DB" "$@" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
op = sys.argv[2]
def row(name, version):
    return db.execute("SELECT term, nonce, ciphertext FROM secret_versions WHERE name=? AND version=?",
                      (name, version)).fetchone()
if op == "flip":            # flip one bit in the middle of a ciphertext
    name, version = sys.argv[3], int(sys.argv[4])
    term, nonce, ct = row(name, version)
    ct = bytearray(ct); ct[len(ct) // 2] ^= 0x01
    db.execute("UPDATE secret_versions SET ciphertext=? WHERE name=? AND version=?", (bytes(ct), name, version))
elif op == "copy":          # copy a row's term, nonce and ciphertext onto another name/version
    sname, sver, dname, dver = sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    term, nonce, ct = row(sname, sver)
    db.execute("UPDATE secret_versions SET term=?, nonce=?, ciphertext=? WHERE name=? AND version=?",
               (term, nonce, ct, dname, dver))
elif op == "destroyed":     # print whether the ciphertext is gone
    print(db.execute("SELECT ciphertext IS NULL FROM secret_versions WHERE name=? AND version=?",
                     (sys.argv[3], int(sys.argv[4]))).fetchone()[0])
    sys.exit(0)
if db.total_changes != 1:
    sys.exit("expected to change one row, changed %d" % db.total_changes)
db.commit()
PYEOF
}
is "destroy left no ciphertext in the store file" "$(sql destroyed app/db 4)" 1
ok "alter one bit of tamper/alter's ciphertext" sql flip tamper/alter 1
ok "copy tamper/src's row onto tamper/dst" sql copy tamper/src 1 tamper/dst 1
ok "copy tamper/ver version 1 onto version 2" sql copy tamper/ver 1 tamper/ver 2
start_daemon || { echo "Bail out! cofferd did not restart"; exit 1; }
unseal_keyfile
fails_with "an altered ciphertext fails with an integrity error (exit 7)" 7 'integrity' "$COFFER" get tamper/alter
fails_with "a row copied to another name fails with an integrity error (exit 7)" 7 'integrity' "$COFFER" get tamper/dst
fails_with "a row moved to another version fails with an integrity error (exit 7)" 7 'integrity' \
    "$COFFER" get tamper/ver --version 2
ok "the source of the copy still reads correctly" value_is value-of-src tamper/src
ok "an untouched secret still reads correctly" value_is untouched tamper/keep
ok "the untouched version 1 of the moved row still reads" value_is first tamper/ver --version 1

done_testing
