#!/bin/bash
# tests/e2e/t-nspawn-unit.sh: runs inside the booted container as root
# (coffer-e2e-driver.service). It only records; the host judges. Every file it
# writes goes to /run/coffer-out (a host directory). The secret value comes
# from /run/coffer-in/value and is never printed.
#
# Order matters: cofferd.service must still be inactive when this starts (it
# is only enabled through its sockets); the first `coffer status` starts it.
# Every request to cofferd comes before `systemctl stop cofferd.service`: a
# connection after it would start the service again.
set -u
O=/run/coffer-out
C=/usr/local/bin/coffer
export LD_LIBRARY_PATH=/usr/local/lib
unset COFFER_SOCKET   # the default, /run/coffer/coffer.sock
SHOW=Id,LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,MainPID,NRestarts,ConditionResult,TriggeredBy

run() {   # run NAME COMMAND...: NAME.out, NAME.err, NAME.rc
    local n=$1; shift
    timeout 10 "$@" >"$O/$n.out" 2>"$O/$n.err"
    echo $? >"$O/$n.rc"
}
show() { systemctl show -p "$SHOW" "$@"; }
mode() { stat -c '%n %a %U:%G %F' "$@" 2>&1; }
failed_units() { systemctl list-units --failed --no-legend --plain --no-pager >"$O/failed" 2>&1; }

# ---- what boot did: sysusers.d, tmpfiles.d, the sockets ----
show systemd-sysusers.service systemd-tmpfiles-setup.service cofferd.socket cofferd-creds.socket \
    cofferd.service >"$O/boot.show"
getent passwd coffer >"$O/passwd"
getent group coffer coffer-admin >"$O/group"
mode /run/coffer /run/coffer/coffer.sock /run/coffer/creds.sock /etc/coffer /etc/coffer/policy.d \
    /var/lib/coffer >"$O/boot.stat"

# ---- the first connection starts cofferd.service ----
run status1 "$C" status
show cofferd.service >"$O/activated.show"
# cofferd did not start: nothing below can work, and each step would wait
# for its timeout; end here (the journal, which the host reads, says why).
if [ "$(systemctl is-active cofferd.service)" != active ]; then
    failed_units
    touch "$O/gave-up"
    exit 1
fi

# ---- init and put, as root (the policy lets uid 0 do everything) ----
mkdir -m 0700 /run/coffer-drv
run init "$C" operator init --keyfile /run/coffer-drv/unseal.key
run put sh -c '"$0" put hf/token </run/coffer-in/value' "$C"
run status2 "$C" status

# ---- credentials: allowed, then not ----
systemctl start trainer@1.service >"$O/trainer.start.out" 2>&1; echo $? >"$O/trainer.start.rc"
systemctl start other@1.service >"$O/other.start.out" 2>&1; echo $? >"$O/other.start.rc"
show trainer@1.service other@1.service >"$O/units.show"

# ---- the daemon process, as the kernel sees it ----
pid=$(systemctl show -p MainPID --value cofferd.service)
echo "$pid" >"$O/cofferd.pid"
if [ -n "$pid" ] && [ "$pid" != 0 ]; then
    cat "/proc/$pid/status" >"$O/cofferd.status"
    # The fds systemd passed (from 3 on, LISTEN_FDNAMES order) and the socket
    # each is: its inode in PID 1's /proc/net/unix (cofferd itself has
    # PrivateNetwork=, so its own table does not list them). /proc/PID/environ
    # still holds the environment the daemon was started with.
    tr '\0' '\n' <"/proc/$pid/environ" | grep '^LISTEN_' >"$O/cofferd.listen"
    names=$(sed -n 's/^LISTEN_FDNAMES=//p' "$O/cofferd.listen")
    fd=3
    : >"$O/cofferd.fds"
    for name in ${names//:/ }; do
        ino=$(readlink "/proc/$pid/fd/$fd" | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
        path=$(awk -v i="$ino" '$7 == i { print $8 }' /proc/1/net/unix | head -1)
        echo "$name $fd ${path:--}" >>"$O/cofferd.fds"
        fd=$((fd + 1))
    done
fi
cp /var/lib/coffer/audit.log "$O/audit.log" 2>"$O/audit.cp.err"
mode /run/coffer /run/coffer/sessions /run/coffer/jwks.json /run/coffer/revoked.json /var/lib/coffer \
    /var/lib/coffer/* >"$O/runtime.stat"
# Which file system each is on: the session directories must have their own.
stat -c '%n %d' /run/coffer /run/coffer/sessions /run/coffer/revoked.json >"$O/runtime.dev" 2>&1
findmnt -n -o FSTYPE,OPTIONS --target /run/coffer/sessions >"$O/sessions.mount" 2>&1
show run-coffer-sessions.mount >"$O/sessions.show"
run audit "$C" audit verify

# ---- stop ----
run stop systemctl stop cofferd.service
show cofferd.service cofferd.socket cofferd-creds.socket >"$O/stopped.show"
mode /run/coffer/coffer.sock /run/coffer/creds.sock >"$O/stopped.stat"

# (the host reads the container's journal itself: /var/log/journal is its directory)
failed_units
touch "$O/done"
