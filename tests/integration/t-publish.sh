#!/bin/bash
# The files verifiers read (revoked.json, jwks.json) are published whatever
# users do to the file system under them: a write that fails (users filled
# the tmpfs of their session directories) is retried from a timer until it
# works, with an alert while the file is stale; every file says when it was
# written and by when a newer one is due (updated, next_update), and is
# rewritten at least every publish_interval.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3
"$PY" -c 'import jwt, cryptography' 2>/dev/null || skip_all "python3-jwt and python3-cryptography are needed (apt-get install python3-jwt)"

# The layout that was shipped: session directories and the published files
# on one small file system.
RUN=$T/run
mkdir -p "$RUN"
mount -t tmpfs -o size=256k,mode=0755 coffer-test "$RUN" 2>/dev/null || skip_all "cannot mount a tmpfs"
CLEANUP_EXTRA="umount -l '$RUN' 2>/dev/null; ${CLEANUP_EXTRA:-}"
INTERVAL=3
printf 'publish_interval = %ss\n' "$INTERVAL" >"$T/cofferd.conf"
chmod 0644 "$T/cofferd.conf"
REV=$RUN/revoked.json
JWKS=$RUN/jwks.json
mark=$(log_mark)
start_daemon --config "$T/cofferd.conf" --session-dir "$RUN/sessions" --jwks "$JWKS" --revocation-list "$REV" ||
    { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }

ok "cofferd warns that the published files share the session directories' file system" \
    log_has "$mark" "^<4>cofferd: WARNING: $REV is on the file system of the session directories"

field() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
dates_sane() {   # dates_sane FILE: updated is about now, next_update two intervals later
    "$PY" -c "
import json,sys,time; d=json.load(open(sys.argv[1])); i=int(sys.argv[2])
assert abs(d['updated'] - time.time()) <= 5, d
assert d['next_update'] - d['updated'] == 2 * i, d" "$1" "$INTERVAL"
}
ok "revoked.json carries updated and next_update" dates_sane "$REV"
ok "jwks.json too" dates_sane "$JWKS"
TOK=$("$COFFER" token issue --aud inference-api --ttl 10m)
JTI=$("$COFFER" token verify "$TOK" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jti"])')
ok "PyJWT verifies a token against the dated JWKS" "$PY" -c "
import json,sys,jwt
ks=jwt.PyJWKSet.from_dict(json.load(open(sys.argv[1])))
jwt.decode(sys.argv[2], ks.keys[0].key, algorithms=['EdDSA'], audience='inference-api')" "$JWKS" "$TOK"

# ---- rewritten at least every publish_interval, changed or not ----
U0=$(field "$REV" updated)
newer() { [ "$(field "$1" updated)" -gt "$2" ]; }
ok "revoked.json is rewritten within the interval without any change" wait_until $((INTERVAL + 3)) newer "$REV" "$U0"
ok "so is jwks.json" wait_until $((INTERVAL + 3)) newer "$JWKS" "$U0"

# ---- a revocation while the file system is full ----
fill() { dd if=/dev/zero of="$RUN/filler" bs=4k 2>/dev/null; sync; }
lists() {   # lists JTI: revoked.json names it
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1]))
sys.exit(0 if any(r['jti'] == sys.argv[2] for r in d['revoked']) else 1)" "$REV" "$1"
}
mark=$(log_mark)
fill
U1=$(field "$REV" updated)
ok "a token is revoked while the file system is full" "$COFFER" lease revoke "$JTI"
exits_out "cofferd knows at once" 7 '^Status: +revoked' "$COFFER" token verify "$TOK"
not_listed() { ! lists "$1"; }
ok "revoked.json cannot list it yet" not_listed "$JTI"
ok "the daemon raises an alert at warning priority" \
    log_has "$mark" "^<4>cofferd: ALERT: cannot write the revocation list $REV: No space left on device; it is stale since"
ok_out "coffer status shows the list stale" '^Revocation list: STALE since [0-9-]+ [0-9:]+ UTC' "$COFFER" status
stale_since_now() {
    "$COFFER" status --json | "$PY" -c 'import json,sys,time
s = json.load(sys.stdin)["revocations_stale_since"]; assert s and abs(s - time.time()) < 30, s'
}
ok "and its JSON says since when" stale_since_now
# Retried after 1 s and 2 s more: the alert is not repeated at every retry.
sleep 4
is "the alert is raised once, not at every retry" "$(log_since "$mark" | grep -c 'ALERT: cannot write the revocation list')" 1
rm -f "$RUN/filler"
# Nothing is asked of cofferd now: the timer alone must write the list.
ok "with space again the list is written within the retry interval, with no other revocation" \
    wait_until 35 lists "$JTI"
ok "its updated stamp moved" newer "$REV" "$U1"
ok "its dates are sane" dates_sane "$REV"
ok "the daemon says it is current again" log_has "$mark" "the revocation list $REV is current again"
ok "coffer status no longer shows it stale" sh -c "! '$COFFER' status | grep -q '^Revocation list: STALE'"
ok "nor does its JSON" sh -c "'$COFFER' status --json | grep -q '\"revocations_stale_since\":null'"

# ---- the JWKS after a key rotation while the file system is full ----
# (its periodic rewrite may have failed too while the file system was full)
jwks_current() { "$COFFER" status --json | grep -q '"jwks_stale_since":null'; }
ok "the JWKS is current again too" wait_until 35 jwks_current
keys() { "$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['keys']))" "$JWKS"; }
mark=$(log_mark)
fill
ok_out "the token key is rotated while the file system is full" "^signing with key " "$COFFER" token rotate
is "jwks.json still has one key" "$(keys)" 1
ok "the daemon raises an alert for the JWKS" log_has "$mark" "^<4>cofferd: ALERT: cannot write the JWKS $JWKS"
ok_out "coffer status shows the JWKS stale" '^JWKS: +STALE since ' "$COFFER" status
rm -f "$RUN/filler"
two_keys() { [ "$(keys)" = 2 ]; }
ok "with space again the JWKS is written with both keys" wait_until 35 two_keys
ok_out "a token of the new key verifies" '^Status: +valid$' "$COFFER" token verify \
    "$("$COFFER" token issue --aud inference-api --ttl 1m)"

done_testing
