#!/bin/bash
# What one caller can make the daemon do to its audit log: `coffer audit
# verify` takes only a regular file of bounded size and verifies it in slices
# (others are served, SIGTERM works meanwhile).
. "$(dirname "$0")/lib.sh"

LOG="$T/audit.log"
need_root
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }

# ---- audit verify: what it reads, and that the loop goes on ----
fails_with "verify of /dev/zero is refused at once: not a regular file" 1 'not a regular file' \
    timeout 5 "$COFFER" audit verify /dev/zero
mkfifo "$T/fifo"
sleep 30 >"$T/fifo" &
HOLDER=$!
CLEANUP_EXTRA="kill $HOLDER 2>/dev/null"
fails_with "verify of a FIFO (a writer holds it open, silent) is refused at once" 1 'not a regular file' \
    timeout 5 "$COFFER" audit verify "$T/fifo"
kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null
ok "the daemon still answers after them" timeout 5 "$COFFER" status
truncate -s 5G "$T/huge"
fails_with "a file over audit_verify_max_mb (4096 by default) is refused, naming the key" 1 'audit_verify_max_mb' \
    timeout 5 "$COFFER" audit verify "$T/huge"
rm -f "$T/huge"

# A large, legal file (sparse: read as zeros, one overlong line after
# another) takes seconds to verify. Meanwhile others are served.
truncate -s 2G "$T/big"
"$COFFER" audit verify "$T/big" >"$T/big.out" 2>&1 &
VPID=$!
sleep 0.5
ok "status is answered while a 2 GiB file is verified" timeout 2 "$COFFER" status
ok "... and the verification was still running then (else this proved nothing)" kill -0 "$VPID"
wait "$VPID"
is "the 2 GiB file does not verify (exit 7: not an audit log)" "$?" 7
ok "... and says why" grep -q 'longer than 64 KiB' "$T/big.out"
ok "the verification has its audit record" grep -q '"op":"audit-verify"' "$LOG"

truncate -s 4000M "$T/big"
"$COFFER" audit verify "$T/big" >/dev/null 2>&1 &
VPID=$!
sleep 0.5
kill -TERM "$DAEMON_PID"
ok "SIGTERM stops the daemon within a second, in the middle of a verification" \
    wait_until 1 test ! -S "$COFFER_SOCKET"
kill -KILL "$DAEMON_PID" 2>/dev/null
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
wait "$VPID" 2>/dev/null
rm -f "$T/big"

done_testing
