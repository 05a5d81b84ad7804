#!/bin/bash
# End to end: LoadCredential= from a REAL systemd (252, Debian bookworm) booted
# in a systemd-nspawn container, against a real cofferd on the host that
# serves the credential socket (tests/integration/t-creds.sh speaks the same
# protocol by hand). The socket's directory is bind-mounted into the container
# at /run/coffer-host; the units write what they got to /run/coffer-out, a host
# directory, and the container powers itself off when they are done.
#
#   trainer@1.service  LoadCredential=hf-token: the policy allows it hf/*, so
#                      it must find the secret in $CREDENTIALS_DIRECTORY.
#   other@1.service    the same credential, no rule: it must get nothing, and
#                      cofferd must audit a creds-load deny and log it loudly.
#   forger.service     root in the container, not in trainer@1.service, binds
#                      the abstract name "@RANDOM/unit/trainer@1.service/
#                      hf-token" (tests/e2e/nspawn/forger.pl): it must get
#                      nothing, refused because the kernel puts it in another
#                      unit.
#
# systemd 252 and a refused credential (seen with this test): systemd's helper
# "(sd-mkdcreds)" connects from inside the unit's cgroup; when cofferd closes
# the connection without writing, systemd does NOT fail the unit: it creates
# an EMPTY credential file (0400, 0 bytes) and runs the unit, which ends
# with Result=success. A unit must therefore check that its credential is not
# empty (test -s "$CREDENTIALS_DIRECTORY/NAME"); the test reports which way
# the systemd it boots behaves, and accepts either "empty" or "unit failed".
#
# Where the host sees the container's units: nspawn --keep-unit runs the
# container's systemd in "<nspawn's cgroup>/payload", so the helper's
# /proc/PID/cgroup on the host reads e.g.
#   0::/cfnspN.slice/machine-cfnspN.scope/payload/system.slice/system-trainer.slice/trainer@1.service
# (inside, in its own cgroup namespace, the same process reads
# 0::/system.slice/system-trainer.slice/trainer@1.service), and
# sd_pid_get_unit() on the host (skip slices, take the first unit name)
# answers the HOST unit holding the container (here machine-cfnspN.scope, as
# machined's machine-NAME.scope would be on a systemd host), not
# trainer@1.service; with nspawn in the root cgroup ("/payload/...") it fails
# (-ENODATA) and cofferd sees the unit ''. The test puts nspawn in a
# scope-like cgroup so that it sees what a systemd host sees. It expects
# cofferd to identify the unit inside the container (trainer@1.service, and
# forger.service for the forger), and to trust that name only because the
# container's scope is listed in creds_containers.
#
# Needs root, systemd-nspawn (Debian: systemd-container), debootstrap, a
# writable cgroup2 hierarchy, and once the network to build the rootfs:
# debootstrap --variant=minbase --include=systemd,dbus bookworm, cached in
# ${COFFER_NSPAWN_CACHE:-/var/cache/coffer-tests}/bookworm-systemd (built in a
# temporary directory there and renamed into place; delete it to rebuild).
# The container runs it read-only (--read-only --volatile=state), so the cache
# is never changed and runs may share it. Everything else (cofferd, the
# container, its cgroups, temp dirs) is removed on exit, pass or fail.
. "$(dirname "$0")/../integration/lib.sh"

need_root
E2E=$top_srcdir/tests/e2e/nspawn
NSPAWN=$(command -v systemd-nspawn) ||
    skip_all "systemd-nspawn is not installed (Debian: apt-get install systemd-container)"
for f in trainer@.service other@.service forger.service finish.service forger.pl; do
    [ -f "$E2E/$f" ] || skip_all "missing $E2E/$f"
done
CG=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
[ -n "$CG" ] && [ -w "$CG/cgroup.procs" ] || skip_all "needs a writable cgroup2 hierarchy"
. "$(dirname "$0")/nspawn-lib.sh"
nspawn_setup cfnsp
BOOT_TIMEOUT=${COFFER_NSPAWN_TIMEOUT:-60}

# ---- the rootfs, built once ----
nspawn_rootfs bookworm-systemd systemd,dbus
[ -x "$ROOTFS/usr/bin/perl" ] || skip_all "the rootfs in $ROOTFS has no perl (perl-base) for the forger"

# nspawn's own cgroup, named like machined's machine-NAME.scope
mkdir -p "$CG/$SLICE/$SCOPE" || { rm_cgroup_tree "$CG/$SLICE"; skip_all "cannot create a cgroup under $CG"; }

# ---- cofferd on the host ----
mkdir -p "$T/host" "$T/out" "$T/units/multi-user.target.wants" "$T/journal"
chmod 0755 "$T/host" "$T/out"
CS=$T/host/creds.sock
cat >"$T/creds.map" <<'EOF'
# credential      secret
hf-token          secret:hf/token
EOF
chmod 0644 "$T/creds.map"
cat >"$POLICY_DIR/10-units.policy" <<'EOF'
allow read secret:hf/*   unit:trainer@*.service
EOF
chmod 0644 "$POLICY_DIR/10-units.policy"
# The container's root names its units: cofferd trusts them because its
# scope is listed (without it every request below is refused, see t-creds.sh).
printf 'creds_containers = machine-cfnsp*.scope\n' >"$T/cofferd.conf"
start_daemon --config "$T/cofferd.conf" --creds-socket "$CS" --creds-map "$T/creds.map" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
# a fresh value; the test compares bytes and never prints it
head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$T/value"
"$COFFER" put hf/token <"$T/value" >/dev/null 2>"$T/put.err" || { echo "Bail out! cannot put the secret"; exit 1; }

# ---- the units, as runtime units (/run/systemd/system) of the container ----
cp "$E2E/trainer@.service" "$E2E/other@.service" "$E2E/forger.service" "$E2E/finish.service" "$T/units/"
for u in trainer@1.service:trainer@.service other@1.service:other@.service forger.service:forger.service \
    finish.service:finish.service; do
    ln -s "../${u#*:}" "$T/units/multi-user.target.wants/${u%%:*}"
done
mkdir -p "$T/e2e"
cp "$E2E/forger.pl" "$T/e2e/"

# ---- boot ----
mark=$(log_mark)
nspawn_boot \
    --bind-ro="$T/units:/run/systemd/system" \
    --bind-ro="$T/e2e:/run/coffer-e2e" \
    --bind="$T/host:/run/coffer-host" \
    --bind="$T/out:/run/coffer-out" \
    --bind="$T/journal:/var/log/journal"
note "the container ran for $nspawn_secs s (nspawn exit $nspawn_rc)"

container_journal() { journalctl -D "$T/journal" --no-pager -o cat "$@" 2>/dev/null; }
diagnose() {   # on failure: what the container and cofferd said (never a value)
    echo "# --- nspawn:"; tail -20 "$T/nspawn.log" | sed 's/^/#   /'
    echo "# --- container journal (test units):"
    container_journal -u trainer@1.service -u other@1.service -u forger.service -u finish.service | tail -40 |
        sed 's/^/#   /'
    echo "# --- cofferd:"; log_since "$mark" | sed 's/^/#   /'
}

unit_prop() {   # unit_prop UNIT PROPERTY: from finish.service's `systemctl show` (blocks split by blank lines)
    awk -v RS= -v id="Id=$1" -v p="$2=" '{ n = split($0, l, "\n"); f = 0; v = ""
        for (i = 1; i <= n; i++) { if (l[i] == id) f = 1; if (index(l[i], p) == 1) v = substr(l[i], length(p) + 1) }
        if (f) print v }' "$T/out/status" 2>/dev/null
}
unit_end() { echo "ActiveState=$(unit_prop "$1" ActiveState) Result=$(unit_prop "$1" Result) ExecMainStatus=$(unit_prop "$1" ExecMainStatus)"; }

is "the container powered itself off after the test units (nspawn exit 0, no timeout)" "$nspawn_rc" 0
ok "...and reported how the units ended" test -s "$T/out/status"
for u in trainer@1.service other@1.service forger.service; do note "$u ended: $(unit_end "$u")"; done

# ---- trainer@1.service: allowed ----
ok "systemd runs trainer@1.service in its own cgroup in the container" \
    grep -qE '^0::.*/trainer@1\.service$' "$T/out/trainer@1.service.cgroup"
ok "trainer@1.service found the secret in \$CREDENTIALS_DIRECTORY/hf-token, byte for byte" \
    cmp -s "$T/value" "$T/out/trainer@1.service.out"
ok "...audited as a creds-load allow for the unit" \
    sh -c "grep '\"op\":\"creds-load\"' '$T/audit.log' | grep '\"decision\":\"allow\"' | grep -qE 'unit=trainer@1.service container=machine-cfnsp[0-9]+.scope credential=hf-token'"
if ! cmp -s "$T/value" "$T/out/trainer@1.service.out"; then
    note "cofferd on requests naming trainer@1.service (the forger's too):"
    log_since "$mark" | grep -F 'unit=trainer@1.service' | sed 's/^/#   /'
fi

# ---- other@1.service: no rule ----
# Which of the two ways systemd treats a refused credential (see the top).
if [ -s "$T/out/other@1.service.out" ]; then
    other_got="$(stat -c %s "$T/out/other@1.service.out") bytes"
elif [ -f "$T/out/other@1.service.out" ]; then
    other_got="an EMPTY credential file ($(awk '$NF == "hf-token" { print $1, $5 " bytes" }' \
        "$T/out/other@1.service.ls")); the unit ran: $(unit_end other@1.service)"
else
    other_got="no credential: the unit did not run its command: $(unit_end other@1.service)"
fi
note "systemd gave other@1.service: $other_got"
ok "other@1.service received nothing (an empty credential, or the unit failed)" \
    sh -c "! test -s '$T/out/other@1.service.out' && ! cmp -s '$T/value' '$T/out/other@1.service.out'"
ok "...the refusal is audited as a creds-load deny for the unit and credential" \
    sh -c "grep '\"op\":\"creds-load\"' '$T/audit.log' | grep '\"decision\":\"deny\"' | grep -qE 'unit=other@1.service container=machine-cfnsp[0-9]+.scope credential=hf-token: policy does not allow'"
ok "...and logged loudly" log_has "$mark" "REFUSED a systemd credential \\(unit=other@1.service container=machine-cfnsp[0-9]*.scope credential=hf-token"

# ---- forger.service: root, wrong unit, the right name ----
is "a root process in the container outside trainer@1.service, claiming its name, gets nothing" \
    "$(cat "$T/out/forger.out.bytes" 2>/dev/null)" 0
ok "...refused because the kernel puts it in forger.service" \
    grep -qE "unit=trainer@1.service credential=hf-token: the connecting process is in unit '[^']*forger\\.service', not 'trainer@1.service'" \
    "$T/audit.log"
if ! grep -qE "in unit '[^']*forger\\.service'" "$T/audit.log"; then
    note "cofferd on the forger:"
    grep -F 'unit=trainer@1.service' "$T/audit.log" | grep -F 'not ' | grep -oE '"detail":"[^"]*"' | sed 's/^/#   /'
fi

# ---- no value anywhere it should not be ----
ok "no secret value in the audit log" sh -c "! grep -qF -f '$T/value' '$T/audit.log'"
ok "no secret value in cofferd's log" sh -c "! grep -qF -f '$T/value' '$T/cofferd.log'"
ok "no secret value in the container's journal" sh -c "! journalctl -D '$T/journal' --no-pager -o cat | grep -qF -f '$T/value'"
ok "the audit log verifies" "$COFFER" audit verify

[ "$TAP_FAILED" -eq 0 ] || diagnose
done_testing
