#!/bin/bash
# One-time grants, as the job-submission story: a user in group ml creates a
# one-use grant for a secret; a job running as a scheduler's service account
# (another user, started with setpriv: no sudo) redeems it once and gets the
# secret. A second redeem, an expired grant, a grant for another user or unit,
# a tampered grant and a revoked grant all fail with clear messages, and the
# audit log links creator and redeemer.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3
S=$$
G=cfml$S A=cfalice$S B=cfbob$S SVC=cfsched$S
groupadd -r "$G" || { echo "Bail out! groupadd failed"; exit 1; }
CLEANUP_EXTRA="groupdel $G 2>/dev/null"
for u in "$A" "$B" "$SVC"; do
    useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$u" || { echo "Bail out! useradd failed"; exit 1; }
    CLEANUP_EXTRA="userdel $u 2>/dev/null; $CLEANUP_EXTRA"
done
usermod -a -G "$G" "$A"
as() { local u=$1; shift; setpriv --reuid="$u" --regid=nogroup --init-groups "$@"; }

cat >"$POLICY_DIR/10-ml.policy" <<EOF
allow delegate secret:ml/*   group:$G uses<=3 ttl<=1d
EOF
chmod 0644 "$POLICY_DIR/10-ml.policy"
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'wandb-key-value' | "$COFFER" put ml/wandb >/dev/null
printf 'other' | "$COFFER" put team/x >/dev/null

# ---- the story ----
as "$A" "$COFFER" grant create --secret ml/wandb --uses 1 --ttl 1h >"$T/g1" 2>"$T/g1.err"
GR=$(cat "$T/g1")
ok "a user in group ml creates a one-use grant" sh -c "printf '%s' '$GR' | grep -qE '^cgr1_[A-Za-z0-9_-]{75}\$'"
ok "the creator is told its id, uses, expiry and how to revoke" grep -qE '^grant [0-9a-f]{32}: 1 use\(s\) of ml/wandb until .*; revoke with' "$T/g1.err"
GID_=$(grep -oE '^grant [0-9a-f]{32}' "$T/g1.err" | cut -d' ' -f2)
fails_with "the service account cannot read the secret by itself" 5 "permission denied: read on secret:ml/wandb" \
    as "$SVC" "$COFFER" get ml/wandb
as "$SVC" "$COFFER" grant redeem "$GR" >"$T/r1" 2>"$T/r1.err"
ok "the job, as the service account, redeems it" test $? -eq 0
ok "and gets the secret" sh -c "printf 'wandb-key-value' | cmp -s - '$T/r1'"
fails_with "a second redeem fails: used up" 6 "this grant was already used \\(1 of 1 uses\\)" \
    as "$SVC" "$COFFER" grant redeem "$GR"
ok "the grant is reached from stdin with -, keeping it out of ps" sh -c "printf '%s\\n' '$GR' | setpriv --reuid=$SVC --regid=nogroup --init-groups '$COFFER' grant redeem - 2>&1 | grep -q 'already used'"

# ---- the audit log links both sides ----
ok "the creation is audited under the grant's lease id, by the creator" \
    sh -c "grep '\"op\":\"grant-create\"' '$T/audit.log' | grep '\"lease\":\"$GID_\"' | grep -q '\"user\":\"$A\"'"
ok "the redemption names the same lease, the creator and the redeemer" \
    sh -c "grep '\"op\":\"grant-redeem\"' '$T/audit.log' | grep '\"lease\":\"$GID_\"' | grep -q 'creator=$A(uid [0-9]*) redeemer=$SVC(uid [0-9]*) use=1/1'"
ok "no grant string and no value in the audit log" \
    sh -c "! grep -qE 'cgr1_|wandb-key-value' '$T/audit.log'"

# ---- n uses ----
GR3=$(as "$A" "$COFFER" grant create --secret ml/wandb --uses 3 2>/dev/null)
for i in 1 2 3; do as "$SVC" "$COFFER" grant redeem "$GR3" >/dev/null 2>&1 || echo "redeem $i failed" >>"$T/n.err"; done
ok "a 3-use grant works exactly 3 times" test ! -e "$T/n.err"
fails_with "...and not a fourth" 6 "already used \\(3 of 3 uses\\)" as "$SVC" "$COFFER" grant redeem "$GR3"
fails_with "more uses than the rule allows (uses<=3) are refused" 1 "4 uses is more than allowed for delegating secret:ml/wandb \\(3\\)" \
    as "$A" "$COFFER" grant create --secret ml/wandb --uses 4
fails_with "a longer ttl than the rule allows (ttl<=1d) is refused" 1 "longer than allowed for delegating" \
    as "$A" "$COFFER" grant create --secret ml/wandb --ttl 2d

# ---- refusals ----
GRE=$(as "$A" "$COFFER" grant create --secret ml/wandb --ttl 1s 2>/dev/null)
sleep 2.2
fails_with "an expired grant fails, saying so" 6 "this grant expired; ask its creator for a new one" \
    as "$SVC" "$COFFER" grant redeem "$GRE"
GRU=$(as "$A" "$COFFER" grant create --secret ml/wandb --for-user "$B" 2>/dev/null)
fails_with "a grant for another user fails for the service account" 5 "this grant is for user $B, not $SVC" \
    as "$SVC" "$COFFER" grant redeem "$GRU"
ok "...and works for that user" sh -c "setpriv --reuid=$B --regid=nogroup --init-groups '$COFFER' grant redeem '$GRU' | grep -q wandb-key-value"
GRT=$(as "$A" "$COFFER" grant create --secret ml/wandb 2>/dev/null)
TAMPER=$("$PY" -c "import sys; g=sys.argv[1]; i=40; c='A' if g[i]!='A' else 'B'; print(g[:i]+c+g[i+1:])" "$GRT")
fails_with "a tampered grant fails" 6 "does not match the one issued \\(tampered or mistyped\\)" \
    as "$SVC" "$COFFER" grant redeem "$TAMPER"
fails_with "a cut-short grant is not a grant" 1 "not a coffer grant" as "$SVC" "$COFFER" grant redeem "${GRT:0:30}"
ok "...and the real one still works after those attempts" sh -c "setpriv --reuid=$SVC --regid=nogroup --init-groups '$COFFER' grant redeem '$GRT' | grep -q wandb-key-value"
fails_with "a user outside ml cannot delegate" 5 "permission denied: delegate on secret:ml/wandb" \
    as "$B" "$COFFER" grant create --secret ml/wandb
fails_with "nor delegate a secret outside the rule" 5 "permission denied: delegate on secret:team/x" \
    as "$A" "$COFFER" grant create --secret team/x
fails_with "a grant for a missing secret is refused" 6 "secret:ml/none" as "$A" "$COFFER" grant create --secret ml/none
fails_with "--for-user and --for-unit together is a usage error" 2 "not both" \
    as "$A" "$COFFER" grant create --secret ml/wandb --for-user "$B" --for-unit 'x.service'
fails_with "an unknown --for-user is refused" 1 "unknown user 'nosuch$S'" \
    as "$A" "$COFFER" grant create --secret ml/wandb --for-user "nosuch$S"

# ---- revocation ----
GRR=$(as "$A" "$COFFER" grant create --secret ml/wandb --uses 2 2>"$T/grr.err")
RID=$(grep -oE '^grant [0-9a-f]{32}' "$T/grr.err" | cut -d' ' -f2)
ok_out "grants are leases: the creator lists them" "^$RID +grant +$A .*secret:ml/wandb" as "$A" "$COFFER" lease ls
fails_with "another user cannot revoke it" 6 "no grant $RID of yours" as "$B" "$COFFER" grant revoke "$RID"
ok_out "its creator revokes it by id" '^revoked$' as "$A" "$COFFER" grant revoke "$RID"
fails_with "a revoked grant fails, saying so" 6 "this grant was revoked by its creator" \
    as "$SVC" "$COFFER" grant redeem "$GRR"
GRS=$(as "$A" "$COFFER" grant create --secret ml/wandb 2>/dev/null)
ok_out "the creator may also revoke by the grant string" '^revoked$' as "$A" "$COFFER" grant revoke "$GRS"

# ---- --for-unit ----
SLICE=cfgr$S.slice
CG=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
if [ -n "$CG" ] && mkdir -p "$CG/$SLICE/train@1.service" "$CG/$SLICE/other@1.service" "$CG/$SLICE/submit@1.service" 2>/dev/null; then
    CLEANUP_EXTRA="rmdir $CG/$SLICE/train@1.service $CG/$SLICE/other@1.service $CG/$SLICE/submit@1.service $CG/$SLICE 2>/dev/null; $CLEANUP_EXTRA"
    IN_UNIT() { local u=$1; shift; sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$SLICE/$u" "$@"; }
    GRN=$(as "$A" "$COFFER" grant create --secret ml/wandb --uses 2 --for-unit 'train@*.service' 2>/dev/null)
    fails_with "a grant for units train@*.service fails outside them" 5 "this grant is for units matching train@\\*.service; you run in other@1.service" \
        IN_UNIT other@1.service setpriv --reuid="$SVC" --regid=nogroup --init-groups "$COFFER" grant redeem "$GRN"
    IN_UNIT train@1.service setpriv --reuid="$SVC" --regid=nogroup --init-groups "$COFFER" grant redeem "$GRN" >"$T/unit.out" 2>&1
    ok "...and works inside train@1.service" grep -q wandb-key-value "$T/unit.out"

    # A delegate right scoped to the creator's unit: at redeem the creator's
    # right is decided for the unit they created the grant in.
    printf 'allow delegate secret:ml/* unit:submit@*.service uses<=2\n' >"$POLICY_DIR/20-submit.policy"
    chmod 0644 "$POLICY_DIR/20-submit.policy"
    "$COFFER" policy reload >/dev/null
    GRU=$(IN_UNIT submit@1.service setpriv --reuid="$B" --regid=nogroup --init-groups "$COFFER" grant create --secret ml/wandb --uses 2 2>"$T/gru.err")
    ok "a user allowed to delegate only from submit@*.service creates a grant there" test -n "$GRU"
    ok_out "...which a job outside any unit redeems (the creator's unit is the one they created it in)" '^wandb-key-value$' \
        as "$SVC" "$COFFER" grant redeem "$GRU"
    rm -f "$POLICY_DIR/20-submit.policy"
    "$COFFER" policy reload >/dev/null
    fails_with "...and not once that unit's delegate right is gone" 5 "the grant's creator \\($B\\) may no longer delegate secret:ml/wandb" \
        as "$SVC" "$COFFER" grant redeem "$GRU"
else
    skip "a grant for units fails outside them" "no writable cgroup2 here"
    skip "...and works inside" "no writable cgroup2 here"
    skip "a grant made under a unit-scoped delegate right" "no writable cgroup2 here"
    skip "...is redeemed" "no writable cgroup2 here"
    skip "...and not once the right is gone" "no writable cgroup2 here"
fi

# ---- the policy still counts ----
GRD=$(as "$A" "$COFFER" grant create --secret ml/wandb --uses 3 2>/dev/null)
printf 'deny read secret:ml/* user:%s\n' "$SVC" >"$POLICY_DIR/20-deny.policy"; chmod 0644 "$POLICY_DIR/20-deny.policy"
"$COFFER" policy reload >/dev/null
fails_with "an explicit deny for the redeemer beats the grant" 5 "a deny rule \(.*20-deny.policy:1\) forbids you secret:ml/wandb, grant or not" \
    as "$SVC" "$COFFER" grant redeem "$GRD"
rm -f "$POLICY_DIR/20-deny.policy"
printf 'allow read secret:team/* user:root\n' >"$POLICY_DIR/10-ml.policy"
"$COFFER" policy reload >/dev/null
fails_with "when the creator may no longer delegate (policy reloaded), outstanding grants stop working" 5 \
    "the grant's creator \($A\) may no longer delegate secret:ml/wandb" as "$SVC" "$COFFER" grant redeem "$GRD"
printf 'allow delegate secret:ml/*   group:%s uses<=3 ttl<=1d\n' "$G" >"$POLICY_DIR/10-ml.policy"
"$COFFER" policy reload >/dev/null
ok "...and work again when the right is back" sh -c "setpriv --reuid=$SVC --regid=nogroup --init-groups '$COFFER' grant redeem '$GRD' | grep -q wandb-key-value"
# used_up_denied: a redeem after a grant's last use is audited as a denial of that grant
used_up_denied() {
    /usr/bin/python3 - "$T/audit.log" <<'EOF'
import json, re, sys
used_up, found = set(), False
for line in open(sys.argv[1]):
    rec = json.loads(line)
    if rec.get("op") != "grant-redeem":
        continue
    m = re.search(r" use=(\d+)/(\d+)$", rec.get("detail") or "")
    if rec["decision"] == "allow" and m and m[1] == m[2]:
        used_up.add(rec["lease"])
    elif rec.get("lease") in used_up:
        found = found or (rec["decision"], rec["result"]) == ("deny", "ENOENT")
sys.exit(0 if found else 1)
EOF
}
ok "a redeem of a used-up grant is audited as a denial (ENOENT)" used_up_denied
ok "a redeem of an unknown grant is audited as a denial (ENOENT)" \
    sh -c "grep '\"op\":\"grant-redeem\",\"object\":\"grant:' '$T/audit.log' | grep '\"result\":\"ENOENT\"' | grep -q '\"decision\":\"deny\"'"
fails_with "--for-unit refuses ** (not a unit glob)" 1 "not \*\*" as "$A" "$COFFER" grant create --secret ml/wandb --for-unit 'a**'

# ---- survives a restart ----
GRP=$(as "$A" "$COFFER" grant create --secret ml/wandb 2>/dev/null)
stop_daemon; start_daemon && unseal_keyfile
ok "a grant survives a daemon restart" sh -c "setpriv --reuid=$SVC --regid=nogroup --init-groups '$COFFER' grant redeem '$GRP' | grep -q wandb-key-value"
fails_with "a used grant stays used after a restart" 6 "already used" as "$SVC" "$COFFER" grant redeem "$GR"

"$COFFER" operator seal >/dev/null
fails_with "redeem on a sealed daemon says to unseal" 4 "sealed" as "$SVC" "$COFFER" grant redeem "$GRT"

done_testing
