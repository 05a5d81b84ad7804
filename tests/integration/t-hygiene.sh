#!/bin/bash
# Process hygiene of a running cofferd: capabilities dropped to the documented
# minimum (CAP_SYS_PTRACE, CAP_IPC_LOCK), no core dumps, umask 077, key pages
# locked, state files private.
. "$(dirname "$0")/lib.sh"
need_root
# An fd the daemon's parent leaves open must not survive into the daemon.
exec 7</etc/hostname
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
exec 7<&-
init_keyfile
printf 'v' | "$COFFER" put hy/x 2>/dev/null
S=/proc/$DAEMON_PID/status
want=0000000000084001   # (1 << CAP_SYS_PTRACE=19) | (1 << CAP_IPC_LOCK=14) | (1 << CAP_CHOWN=0)
ok "effective capabilities are only CAP_SYS_PTRACE, CAP_IPC_LOCK and CAP_CHOWN" grep -qx "CapEff:[[:space:]]*$want" "$S"
ok "permitted capabilities are the same three" grep -qx "CapPrm:[[:space:]]*$want" "$S"
ok "the bounding set holds only those three" grep -qx "CapBnd:[[:space:]]*$want" "$S"
ok "no inheritable capabilities" grep -qx "CapInh:[[:space:]]*0000000000000000" "$S"
ok "umask is 0077" grep -qx "Umask:[[:space:]]*0077" "$S"
ok "core dumps are off (RLIMIT_CORE 0)" sh -c 'grep "^Max core file size" "$1" | awk "{exit !(\$5 == 0 && \$6 == 0)}"' _ "/proc/$DAEMON_PID/limits"
if ldd "$COFFERD" 2>/dev/null | grep -q libasan; then
    skip "key pages are locked in memory (VmLck > 0)" "AddressSanitizer turns mlock() into a no-op"
else
    ok "key pages are locked in memory (VmLck > 0)" sh -c 'awk "/^VmLck:/ {exit !(\$2 > 0)}" "$1"' _ "$S"
fi
ok "the state directory is 0700" sh -c '[ "$(stat -c %a "$1")" = 700 ]' _ "$T/state"
ok "the store file is 0600" sh -c '[ "$(stat -c %a "$1")" = 600 ]' _ "$T/state/coffer.db"
ok "the audit log is 0600" sh -c '[ "$(stat -c %a "$1")" = 600 ]' _ "$T/audit.log"
ok "an fd inherited from the parent was closed at start" \
    sh -c '! ls -l /proc/$1/fd | grep -q /etc/hostname' _ "$DAEMON_PID"
done_testing
