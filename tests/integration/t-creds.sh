#!/bin/bash
# The systemd credential responder on the host, speaking systemd's side of the
# protocol by hand (tests/e2e/t-nspawn.sh does it with a real systemd): a
# client bound to the abstract address "\0RANDOM/unit/UNIT/CREDENTIAL" that
# shuts down its write side and reads until EOF. Allowed units get the value;
# denied units, forged names, non-root callers, a sealed daemon and unmapped
# names get nothing, and each refusal is audited and logged.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3
S=$$

CG=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
SLICE=cfcr$S.slice
# Nested units: systemd in a container (machine scope) and a service with
# Delegate= that names its own sub-cgroup.
BOX=cfct$S.scope/payload/system.slice/trainer@1.service
DELEG=deleg.service/trainer@1.service
[ -n "$CG" ] && mkdir -p "$CG/$SLICE/trainer@1.service" "$CG/$SLICE/other@1.service" "$CG/$SLICE/$BOX" \
    "$CG/$SLICE/$DELEG" 2>/dev/null ||
    skip_all "needs a writable cgroup2 hierarchy to put processes into units"
CLEANUP_EXTRA="rmdir $CG/$SLICE/trainer@1.service $CG/$SLICE/other@1.service $CG/$SLICE/$BOX \
    $CG/$SLICE/cfct$S.scope/payload/system.slice $CG/$SLICE/cfct$S.scope/payload $CG/$SLICE/cfct$S.scope \
    $CG/$SLICE/$DELEG $CG/$SLICE/deleg.service $CG/$SLICE 2>/dev/null"
IN_UNIT() { local u=$1; shift; sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$SLICE/$u" "$@"; }

cat >"$T/creds.map" <<'EOF'
# credential      secret
hf-token          secret:hf/token
big               secret:big/blob
EOF
chmod 0644 "$T/creds.map"
cat >"$POLICY_DIR/10-units.policy" <<'EOF'
allow read secret:hf/*   unit:trainer@*.service
allow read secret:big/*  unit:trainer@*.service
allow read secret:plain  unit:trainer@*.service
EOF
chmod 0644 "$POLICY_DIR/10-units.policy"
CS=$T/creds.sock
printf '# containers whose units are trusted: none yet\n' >"$T/cofferd.conf"
start_daemon --config "$T/cofferd.conf" --creds-socket "$CS" --creds-map "$T/creds.map" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
printf 'hf_unit_value' | "$COFFER" put hf/token >/dev/null
printf 'plain-value' | "$COFFER" put plain >/dev/null
head -c $((1024 * 1024)) /dev/urandom >"$T/big"
"$COFFER" put big/blob <"$T/big" >/dev/null

# load NAME_UNIT CREDENTIAL [OUT]: what systemd's helper does; prints the byte count
cat >"$T/load.py" <<'EOF'
import os, socket, sys
unit, cred, path, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if unit != "-":
    s.bind(b"\0" + os.urandom(8).hex().encode() + b"/unit/" + unit.encode() + b"/" + cred.encode())
s.connect(path)
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
open(out, "wb").write(data)
print(len(data))
EOF
load() { "$PY" "$T/load.py" "$1" "$2" "$CS" "$3"; }

is "the credential socket is root-only (0600)" "$(stat -c %a "$CS")" 600
ok "a unit the policy allows gets the mapped secret" IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/c1"
ok "...with exactly the value" sh -c "printf 'hf_unit_value' | cmp -s - '$T/c1'"
ok "an unmapped credential is the secret of the same name" IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service plain "$CS" "$T/c2"
ok "...with exactly the value" sh -c "printf 'plain-value' | cmp -s - '$T/c2'"
ok "a 1 MiB value (systemd's limit) arrives whole" IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service big "$CS" "$T/c3"
ok "...byte for byte" cmp -s "$T/big" "$T/c3"
ok "the delivery is audited as an allow for the unit and credential" \
    sh -c "grep '\"op\":\"creds-load\"' '$T/audit.log' | grep '\"decision\":\"allow\"' | grep -q 'unit=trainer@1.service credential=hf-token'"

mark=$(log_mark)
is "a unit the policy does not allow gets nothing" "$(IN_UNIT other@1.service "$PY" "$T/load.py" other@1.service hf-token "$CS" "$T/d1")" 0
ok "...the denial is audited with the unit" \
    sh -c "grep '\"op\":\"creds-load\"' '$T/audit.log' | grep '\"decision\":\"deny\"' | grep -q 'unit=other@1.service credential=hf-token: policy does not allow'"
ok "...and logged loudly" log_has "$mark" "REFUSED a systemd credential \\(unit=other@1.service credential=hf-token"
is "a root process outside the unit using the unit's name (forged) gets nothing" \
    "$(IN_UNIT other@1.service "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/d2")" 0
ok "...refused because the kernel puts it in another unit" \
    grep -q "unit=trainer@1.service credential=hf-token: the connecting process is in unit 'other@1.service', not 'trainer@1.service'" "$T/audit.log"

# A unit nested in another one is named by the outer one's root.
is "a unit of that name inside a container's scope gets nothing by default" \
    "$(IN_UNIT "$BOX" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/n1")" 0
ok "...refused as a container's unit, with what to set" \
    grep -q "unit=trainer@1.service container=cfct$S.scope credential=hf-token: unit 'trainer@1.service' runs inside 'cfct$S.scope', whose root names its units; add 'cfct$S.scope' (or a glob) to creds_containers" "$T/audit.log"
is "a sub-cgroup named like the unit inside a delegated service gets nothing" \
    "$(IN_UNIT "$DELEG" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/n2")" 0
ok "...refused as nested in deleg.service" \
    grep -q "unit=trainer@1.service container=deleg.service credential=hf-token: unit 'trainer@1.service' runs inside 'deleg.service'" "$T/audit.log"
printf 'creds_containers = other.scope cfct*.scope\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"
ok "with the container listed in creds_containers (reload), its unit gets the secret" \
    IN_UNIT "$BOX" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/n3"
ok "...with exactly the value" sh -c "printf 'hf_unit_value' | cmp -s - '$T/n3'"
ok "...audited as an allow naming the container" \
    sh -c "grep '\"decision\":\"allow\"' '$T/audit.log' | grep -q 'unit=trainer@1.service container=cfct$S.scope credential=hf-token'"
is "...while the delegated service, not listed, still gets nothing" \
    "$(IN_UNIT "$DELEG" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" /dev/null)" 0
is "...and a forged name inside the listed container still gets nothing" \
    "$(IN_UNIT "$BOX" "$PY" "$T/load.py" other@1.service hf-token "$CS" /dev/null)" 0
printf 'creds_containers = machine-*.scope bad/unit.scope\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "a creds_containers entry that is not a unit glob is refused on reload" \
    wait_until 5 sh -c "tail -n +$((mark + 1)) '$T/cofferd.log' | grep -q \"reload failed, keeping the old configuration.*invalid value for 'creds_containers'\""
ok "...and the old list stays in force" IN_UNIT "$BOX" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/n4"
printf 'creds_containers = none\n' >"$T/cofferd.conf"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
wait_until 5 log_has "$mark" "configuration reloaded"
is "creds_containers = none trusts no container again" \
    "$(IN_UNIT "$BOX" "$PY" "$T/load.py" trainer@1.service hf-token "$CS" /dev/null)" 0

chmod 0666 "$CS"   # let a non-root process reach the daemon's own check
is "a non-root process in the unit with the right name gets nothing" \
    "$(IN_UNIT trainer@1.service setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" "$T/load.py" trainer@1.service hf-token "$CS" /dev/null)" 0
ok "...refused as not root" grep -q 'credential=hf-token: peer uid 65534 is not root' "$T/audit.log"
chmod 0600 "$CS"
is "a client without systemd's address gets nothing" "$("$PY" "$T/load.py" - x "$CS" /dev/null)" 0
ok "...refused as not a credential request" grep -q 'not systemd.s @RANDOM/unit/UNIT/CREDENTIAL' "$T/audit.log"
is "an unmapped name that is no secret name gets nothing" \
    "$(IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service 'a:b' "$CS" /dev/null)" 0
ok "...refused with a pointer to the map" grep -q 'credential=a:b: no secret for this credential' "$T/audit.log"
is "a missing secret gets nothing" "$(IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service hf-missing "$CS" /dev/null)" 0
"$COFFER" operator seal >/dev/null
is "a sealed daemon gives nothing" "$(IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service hf-token "$CS" /dev/null)" 0
ok "...and says it is sealed" grep -q 'credential=hf-token: cofferd is sealed' "$T/audit.log"
unseal_keyfile
ok "no secret value in the audit log" sh -c "! grep -q 'hf_unit_value' '$T/audit.log'"
ok "the audit log verifies" "$COFFER" audit verify

# a bad creds map is reported with its line, and the old one stays
printf 'ok-name secret:hf/token\nbad name here\nx secret:../y\n' >"$T/creds.map"
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "a bad creds map is refused on reload, every error with its line" \
    wait_until 5 sh -c "tail -n +$((mark + 1)) '$T/cofferd.log' | grep -q 'CREDS MAP NOT LOADED, the old one stays in force: .*creds.map:2: expected CREDENTIAL secret:NAME'"
ok "...including the second one" log_has "$mark" "creds.map:3: expected secret:NAME with a valid secret name"
ok "...and the old map still serves" IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service hf-token "$CS" "$T/c4"
ok "...the right value" sh -c "printf 'hf_unit_value' | cmp -s - '$T/c4'"

# a creds map that does not load at start: no credential at all, not "same names"
stop_daemon
start_daemon --creds-socket "$CS" --creds-map "$T/creds.map" && unseal_keyfile
is "with a broken creds map at start, nothing is served (not even same-name secrets)" \
    "$(IN_UNIT trainer@1.service "$PY" "$T/load.py" trainer@1.service plain "$CS" /dev/null)" 0
ok "...refused with the reason" grep -q 'credential=plain: the creds map failed to load' "$T/audit.log"

stop_daemon
start_daemon --creds-socket none || { echo "Bail out! restart failed"; exit 1; }
ok "--creds-socket none serves no credential socket" test ! -e "$CS"

done_testing
