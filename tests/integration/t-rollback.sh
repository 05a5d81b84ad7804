#!/bin/bash
# Rollback of the store: an older copy of coffer.db put back would bring back
# a rotated value, a used-up grant and a revoked token. The daemon anchors the
# store's generation in the audit log and refuses to unseal an older store
# until the operator accepts the restore with `coffer operator accept-rollback`.
. "$(dirname "$0")/lib.sh"

restart() { stop_daemon; start_daemon "$@" || { echo "Bail out! cofferd did not start"; exit 1; }; }
put() { printf '%s' "$2" | "$COFFER" put "$1"; }
get_is() { [ "$("$COFFER" get "$1")" = "$2" ]; }   # get_is NAME VALUE
save_store() { rm -rf "$1"; mkdir -p "$1"; cp -p "$T"/state/coffer.db* "$1"/; }
put_back() { rm -f "$T"/state/coffer.db*; cp -p "$1"/coffer.db* "$T/state/"; }
audit_has() { grep -qE -- "$1" "$T/audit.log"; }
status_field() { "$COFFER" status --json | grep -oE "\"$1\":[^,}]*"; }

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
ok "a value before the backup" put rb/api old-value
TOK=$("$COFFER" token issue --aud rb-api --ttl 1h)
"$COFFER" grant create --secret rb/api --uses 2 --ttl 1h >"$T/grant" 2>"$T/grant.err"
GR=$(cat "$T/grant")
ok "a token and a two-use grant before the backup" test -n "$TOK" -a -n "$GR"
JTI=$("$COFFER" token verify "$TOK" --json | grep -oE '"jti":"[0-9a-f]{32}"' | cut -d'"' -f4)
ok "the token's lease id is known" test -n "$JTI"
stop_daemon
save_store "$T/backup"

# ---- after the backup: rotate the value, use the grant, revoke the token ----
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "unseal after the backup" unseal_keyfile
ok "the value is rotated" put rb/api new-value
ok "the grant is used once" sh -c "printf '%s' '$GR' | '$COFFER' grant redeem - >/dev/null"
ok "the token is revoked" "$COFFER" lease revoke "$JTI"
exits_out "the revoked token is revoked" 7 '^Status: +revoked' "$COFFER" token verify "$TOK"
stop_daemon

# ---- the backup is put back ----
put_back "$T/backup"
mark=$(log_mark)
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "the daemon logs the rollback with both generations" \
    log_has "$mark" 'STORE ROLLED BACK: .*coffer.db is at generation [0-9]+, but the audit log .* anchors generation [0-9]+.*accept-rollback'
ok "the audit log records the rollback" audit_has '"op":"store-rollback".*"detail":"store generation [0-9]+, anchored [0-9]+"'
fails_with "unseal of the older store is refused, naming both generations and the way out (exit 8)" 8 \
    'rolled back: it is at generation [0-9]+, but the audit log anchors generation [0-9]+.*coffer operator accept-rollback' \
    "$COFFER" operator unseal --keyfile "$T/unseal.key"
ok_out "it stays sealed" '"sealed":true' "$COFFER" status --json
ok "the refused unseal is audited" audit_has '"op":"unseal".*"result":"ESTALE"'
for i in 1 2 3 4 5; do restart; done
fails_with "restarts do not make the older store catch up with its anchor" 8 'rolled back' \
    "$COFFER" operator unseal --keyfile "$T/unseal.key"
mkdir -p "$T/creds"; cp "$T/unseal.key" "$T/creds/coffer.unseal"
stop_daemon
mark=$(log_mark)
CREDENTIALS_DIRECTORY="$T/creds" start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok_out "a credential does not unseal the older store either" '"sealed":true' "$COFFER" status --json
ok "and the daemon says why" log_has "$mark" 'did not unseal the store: the store was rolled back'
fails_with "accept-rollback is for admins (exit 5)" 5 'permission denied' as_nobody "$COFFER" operator accept-rollback

# ---- a deliberate restore ----
ok_out "the operator accepts the restore" \
    '^rollback accepted: the store at generation [0-9]+ replaces the audit log.s generation [0-9]+' \
    "$COFFER" operator accept-rollback
ok "accept-rollback is audited with both generations" \
    audit_has '"op":"accept-rollback".*"detail":"store generation [0-9]+ replaces anchored [0-9]+"'
ok "then unseal works" unseal_keyfile
ok "the restored value is the backup's" get_is rb/api old-value
fails_with "there is no rollback left to accept" 1 'no rollback to accept' "$COFFER" operator accept-rollback
ok "the accepted store writes" put rb/api newer-value
fails_with "a write that fails (check-and-set) rolls back" 8 'check-and-set' \
    sh -c "printf x | '$COFFER' put rb/api --cas 1"
fails_with "so does a denied one" 5 'permission denied' sh -c "printf x | setpriv --reuid=nobody --regid=nogroup --clear-groups '$COFFER' put rb/api"
restart
ok "after failed writes and a restart, no rollback is seen where there was none" unseal_keyfile
stop_daemon
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "after a restart the accepted store unseals: the anchor moved" unseal_keyfile
ok "the audit log verifies" "$COFFER" audit verify

# ---- a store made before generations ----
stop_daemon
/usr/bin/python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"delete from meta where key='generation'\"); c.commit()" "$T/state/coffer.db"
rm -f "$T/audit.log"
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "a store without a generation (and a log without an anchor) unseals" unseal_keyfile
ok "and reads" get_is rb/api newer-value
ok "its writes count from zero again" put rb/api value-4
restart
ok "and it unseals after a restart" unseal_keyfile
done_testing
