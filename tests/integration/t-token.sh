#!/bin/bash
# Tokens: issued as JWTs signed with EdDSA, verified by coffer and by a third
# party (PyJWT, Debian's python3-jwt) against the published JWKS; expiry,
# tampering, audience, revocation, key rotation, policy bounds. And derived
# keys: stable, per principal, never stored.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3
"$PY" -c 'import jwt, cryptography' 2>/dev/null || skip_all "python3-jwt and python3-cryptography are needed (apt-get install python3-jwt)"

cat >"$POLICY_DIR/10-tok.policy" <<EOF
allow issue token:inference-api   user:nobody ttl<=1h
allow issue token:ml2/**          user:nobody
allow issue key:datasets/*        user:nobody
EOF
chmod 0644 "$POLICY_DIR/10-tok.policy"
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
JWKS=$T/jwks.json

# pyjwt_verify TOKEN AUDIENCE: verify with PyJWT against the JWKS file only.
cat >"$T/verify.py" <<'EOF'
import json, sys
import jwt
token, aud, jwks_path = sys.argv[1], sys.argv[2], sys.argv[3]
keys = jwt.PyJWKSet.from_dict(json.load(open(jwks_path)))
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in keys.keys if k.key_id == kid)
try:
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=aud,
                        options={"require": ["exp", "iat", "nbf", "iss", "sub", "aud", "jti"]})
except jwt.ExpiredSignatureError:
    print("expired"); sys.exit(3)
except jwt.InvalidAudienceError:
    print("wrong-audience"); sys.exit(4)
except jwt.InvalidSignatureError:
    print("bad-signature"); sys.exit(5)
except jwt.PyJWTError as e:
    print("invalid:", type(e).__name__); sys.exit(6)
print("valid", claims["sub"], claims["aud"], claims["jti"])
EOF
pyjwt() { "$PY" "$T/verify.py" "$1" "$2" "$JWKS"; }

# ---- issue and verify ----
TOK=$("$COFFER" token issue --aud inference-api --ttl 10m)
ok "a token has three base64url parts" sh -c "printf '%s' '$TOK' | grep -qE '^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\$'"
ok_out "coffer verifies it" '^Status: +valid$' "$COFFER" token verify "$TOK" --aud inference-api
ok_out "verify reads the token from stdin with -" '^Status: +valid$' sh -c "printf '%s\\n' '$TOK' | '$COFFER' token verify -"
is "the JWKS file is world-readable" "$(stat -c %a "$JWKS")" 644
same_keys() { "$COFFER" token jwks | "$PY" -c "import json,sys; assert json.load(sys.stdin)['keys'] == json.load(open(sys.argv[1]))['keys']" "$JWKS"; }
ok "coffer token jwks prints the same keys as the file" same_keys
ok_out "PyJWT verifies it against the JWKS (EdDSA, RFC 8037)" "^valid root inference-api [0-9a-f]{32}\$" pyjwt "$TOK" inference-api
exits_out "PyJWT rejects another audience" 4 '^wrong-audience' pyjwt "$TOK" other-api
HDR=$("$PY" -c "import jwt,sys; print(sorted(jwt.get_unverified_header(sys.argv[1]).items()))" "$TOK")
ok "the header is alg EdDSA, typ JWT, with a kid" sh -c "echo \"$HDR\" | grep -q \"('alg', 'EdDSA'), ('kid', '[A-Za-z0-9_-]\\{43\\}'), ('typ', 'JWT')\""
CLAIMS=$("$PY" -c "import jwt,sys,json; print(json.dumps(jwt.decode(sys.argv[1], options={'verify_signature': False})))" "$TOK")
ok "the claims are iss, sub, aud, iat, nbf, exp, jti, uid" "$PY" -c "
import json,sys; c=json.loads(sys.argv[1])
assert set(c) >= {'iss','sub','aud','iat','nbf','exp','jti','uid'}, c
assert c['exp'] - c['iat'] == 600 and c['nbf'] == c['iat'], c
assert c['iss'].startswith('coffer@')" "$CLAIMS"

# ---- tampering, expiry ----
# Flip one character of the payload (re-encoding it with another sub).
BAD=$("$PY" -c "
import sys,base64,json
h,p,s=sys.argv[1].split('.')
c=json.loads(base64.urlsafe_b64decode(p+'='*(-len(p)%4))); c['sub']='admin'
p2=base64.urlsafe_b64encode(json.dumps(c,separators=(',',':')).encode()).rstrip(b'=').decode()
print(h+'.'+p2+'.'+s)" "$TOK")
exits_out "coffer rejects a token whose claims were changed" 7 '^Status: +bad-signature' "$COFFER" token verify "$BAD"
exits_out "PyJWT rejects it too" 5 '^bad-signature' pyjwt "$BAD" inference-api
exits_out "coffer rejects garbage as malformed" 7 '^Status: +malformed' "$COFFER" token verify "not.a.token"
exits_out "and an alg=none token" 7 '^Status: +malformed' "$COFFER" token verify \
    "$("$PY" -c "import base64;e=lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode(); print(e(b'{\"alg\":\"none\",\"kid\":\"x\"}')+'.'+e(b'{\"exp\":9999999999}')+'.')")"
SHORT=$("$COFFER" token issue --aud inference-api --ttl 1s)
sleep 2
exits_out "coffer reports an expired token" 7 '^Status: +expired' "$COFFER" token verify "$SHORT"
exits_out "PyJWT rejects the expired token" 3 '^expired' pyjwt "$SHORT" inference-api

# ---- revocation ----
JTI=$("$COFFER" token verify "$TOK" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jti"])')
ok "the token's jti is its lease" sh -c "'$COFFER' lease ls | grep -q '^$JTI '"
ok "revoking the lease" "$COFFER" lease revoke "$JTI"
exits_out "makes coffer report the token revoked" 7 '^Status: +revoked' "$COFFER" token verify "$TOK"
ok "the revocation list file names it" "$PY" -c "import json; d=json.load(open('$T/revoked.json')); assert any(r['jti']=='$JTI' for r in d['revoked'])"
is "the revocation list is world-readable" "$(stat -c %a "$T/revoked.json")" 644
stop_daemon; start_daemon && unseal_keyfile
exits_out "the token is still reported revoked after a restart" 7 '^Status: +revoked' "$COFFER" token verify "$TOK"

# ---- policy ----
as_nobody "$COFFER" token issue --aud inference-api >"$T/nb.tok" 2>"$T/nb.err"
ok "a user allowed by policy gets a token" test -s "$T/nb.tok"
ok_out "its subject is the user" "^valid nobody inference-api " pyjwt "$(cat "$T/nb.tok")" inference-api
is "the default lifetime is capped by the rule's ttl<=1h" \
    "$("$PY" -c "import jwt,sys; c=jwt.decode(sys.argv[1], options={'verify_signature': False}); print(c['exp']-c['iat'])" "$(cat "$T/nb.tok")")" 3600
fails_with "a longer ttl than the rule allows is refused" 1 "longer than allowed for token:inference-api \\(3600s\\)" \
    as_nobody "$COFFER" token issue --aud inference-api --ttl 2h
fails_with "an audience the policy does not name is refused" 5 "permission denied: issue on token:other" \
    as_nobody "$COFFER" token issue --aud other
fails_with "a bad audience is refused before asking" 1 "audience is 1-255" "$COFFER" token issue --aud 'a b'
fails_with "token issue without --aud is a usage error" 2 "usage" "$COFFER" token issue

# ---- audiences are names: token:ml2/** is ml2's, and only ml2's ----
issued_for() { as_nobody "$COFFER" token issue --aud "$1" >"$T/aud.tok" && test -s "$T/aud.tok"; }
ok "an audience under the rule's prefix is issued" issued_for ml2/train
ok_out "and verifies for that audience" '^Status: +valid$' "$COFFER" token verify "$(cat "$T/aud.tok")" --aud ml2/train
for a in 'ml2/../../prod' 'ml2/..' 'ml2/./x' 'ml2//prod' '/ml2/x' 'ml2/' "$(printf 'ml2/a\001b')" "$(printf 'ml2/a\tb')"; do
    fails_with "the audience $(printf %q "$a") is refused under the rule" 1 \
        "audience is 1-255 characters .* no empty, '\.' or '\.\.' segment" as_nobody "$COFFER" token issue --aud "$a"
done
# libcoffer refuses those before asking; cofferd must refuse them on its own.
hexof() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
raw_refuses() {   # raw_refuses OPCODE MESSAGE AUDIENCE [TOKEN]: an EINVAL reply with MESSAGE
    as_nobody "$RAWCLIENT" "$COFFER_SOCKET" --frame "$1" --field "52:strhex:$(hexof "$3")" \
        ${4:+--field "53:hex:$(hexof "$4")"} >"$T/raw.out" &&
        grep -qE "^reply op=0xffff id=[0-9]+ code=22 msg=$2" "$T/raw.out"
}
for a in 'ml2/../../prod' 'ml2/./x' 'ml2//prod' '/ml2/x' "$(printf 'ml2/a\001b')"; do
    ok "cofferd itself refuses to issue for $(printf %q "$a")" \
        raw_refuses 64 "give a valid audience: an audience is 1-255 characters" "$a"
done
ok "no token was issued for any of them" sh -c "! '$COFFER' lease ls --all | grep -qE 'token:(/|ml2/(\\.|/|a))'"
fails_with "token verify --aud with a dotted audience is refused" 1 "audience is 1-255 characters" \
    "$COFFER" token verify "$TOK" --aud 'ml2/../../prod'
ok "cofferd refuses to check a token against such an audience" \
    raw_refuses 65 "give a valid audience to check against" 'ml2/../x' "$TOK"

# ---- rotation ----
OLD=$("$COFFER" token issue --aud inference-api --ttl 10m)
OLDKID=$("$COFFER" token verify "$OLD" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["kid"])')
fails_with "only an admin rotates" 5 "permission denied: admin on store:token-rotate" as_nobody "$COFFER" token rotate
ok_out "rotation names the new key" "^signing with key [A-Za-z0-9_-]{43};" "$COFFER" token rotate
NEW=$("$COFFER" token issue --aud inference-api --ttl 10m)
NEWKID=$("$COFFER" token verify "$NEW" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["kid"])')
ok "new tokens carry the new kid" test "$NEWKID" != "$OLDKID"
is "the JWKS lists both keys" "$("$PY" -c "import json; print(len(json.load(open('$JWKS'))['keys']))")" 2
ok_out "a token signed before the rotation still verifies (coffer)" '^Status: +valid$' "$COFFER" token verify "$OLD"
ok_out "and with PyJWT" "^valid " pyjwt "$OLD" inference-api
ok_out "a new token verifies with PyJWT" "^valid " pyjwt "$NEW" inference-api
stop_daemon; start_daemon && unseal_keyfile
ok_out "after a restart the same keys sign and verify" '^Status: +valid$' "$COFFER" token verify "$NEW"
ok "keys are derived, not stored: no key material in the store" \
    sh -c "! '$PY' -c \"import sqlite3; print([r for r in sqlite3.connect('$T/state/coffer.db').execute('select key,value from meta')])\" | grep -qi 'ed25519'"

# ---- sealed ----
"$COFFER" operator seal >/dev/null
fails_with "token issue on a sealed daemon says to unseal" 4 "sealed: run \`coffer operator unseal\`" \
    "$COFFER" token issue --aud inference-api
unseal_keyfile

# ---- derived keys ----
K1=$("$COFFER" key derive datasets/imagenet)
K2=$("$COFFER" key derive datasets/imagenet)
is "a derived key is stable" "$K1" "$K2"
is "it is 32 bytes by default" "${#K1}" 64
is "--bytes 16 gives 16 bytes" "$("$COFFER" key derive datasets/imagenet --bytes 16 | tr -d '\n' | wc -c)" 32
ok "another name gives another key" test "$("$COFFER" key derive datasets/coco)" != "$K1"
KN=$(as_nobody "$COFFER" key derive datasets/imagenet)
ok "another principal gets another key for the same name" test -n "$KN" -a "$KN" != "$K1"
"$COFFER" operator rotate >/dev/null
"$COFFER" token rotate >/dev/null
is "rotating data keys and token keys does not change it" "$("$COFFER" key derive datasets/imagenet)" "$K1"
stop_daemon; start_daemon && unseal_keyfile
is "nor does a restart" "$("$COFFER" key derive datasets/imagenet)" "$K1"
fails_with "a name the policy does not allow is refused" 5 "permission denied: issue on key:models/x" \
    as_nobody "$COFFER" key derive models/x
fails_with "--bytes outside 16..64 is a usage error" 2 "--bytes needs a whole number from 16 to 64" \
    "$COFFER" key derive datasets/x --bytes 65
ok "the key never reaches the audit log" sh -c "! grep -q '$K1' '$T/audit.log'"
ok "but the derivation is audited" grep -q '"op":"key-derive","object":"key:datasets/imagenet"' "$T/audit.log"

# ---- the subject of a service's token ----
# The unit for the service's own (system) uid; the user for a user's job that
# the service runs (cron.service, a scheduler), with the unit as a claim.
CG=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
SLICE=cftk$$.slice
claims() { "$PY" -c 'import base64,json,sys; p=sys.stdin.read().split(".")[1]; c=json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4))); print(c["sub"], c.get("unit",""))'; }
if [ -n "$CG" ] && mkdir -p "$CG/$SLICE/jobs.service" 2>/dev/null; then
    CLEANUP_EXTRA="rmdir $CG/$SLICE/jobs.service $CG/$SLICE 2>/dev/null; ${CLEANUP_EXTRA:-}"
    IN_UNIT() { local u=$1; shift; sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$SLICE/$u" "$@"; }
    is "a token issued by the service's own uid (root) in jobs.service has sub = the unit" \
        "$(IN_UNIT jobs.service "$COFFER" token issue --aud inference-api | claims)" "jobs.service jobs.service"
    is "a token issued by a user's job in jobs.service has sub = the user, and the unit claim" \
        "$(IN_UNIT jobs.service setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFER" token issue --aud inference-api | claims)" \
        "nobody jobs.service"
else
    skip "a token issued by the service's own uid (root) in jobs.service has sub = the unit" "no writable cgroup2"
    skip "a token issued by a user's job in jobs.service has sub = the user, and the unit claim" "no writable cgroup2"
fi

done_testing
