#!/bin/bash
# What one caller can make the daemon do to its audit log: `coffer audit
# verify` takes only a regular file of bounded size and verifies it in slices
# (others are served, SIGTERM works meanwhile); records have bounded fields;
# a flood from one uid is throttled and summarized; near a full disk the
# reserve is kept for root.
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
fails_with "verify of a FIFO with no writer is refused at once too (coffer does not wait to open it)" 1 \
    'not a regular file' timeout 5 "$COFFER" audit verify "$T/fifo"
ok "the daemon still answers after them" timeout 5 "$COFFER" status
truncate -s 5G "$T/huge"
fails_with "a file over audit_verify_max_mb (4096 by default) is refused, naming the key" 1 'audit_verify_max_mb' \
    timeout 5 "$COFFER" audit verify "$T/huge"
rm -f "$T/huge"

# A large, legal file (sparse: read as zeros, one overlong line after
# another) takes seconds to verify. Meanwhile others are served.
truncate -s 4000M "$T/big"
"$COFFER" audit verify "$T/big" >"$T/big.out" 2>&1 &
VPID=$!
sleep 0.5
ok "status is answered while a 4000 MiB file is verified" timeout 2 "$COFFER" status
ok "... and the verification was still running then (else this proved nothing)" kill -0 "$VPID"
wait "$VPID"
is "the 4000 MiB file does not verify (exit 7: not an audit log)" "$?" 7
ok "... and says why" grep -q 'longer than 64 KiB' "$T/big.out"
ok "the verification has its audit record" grep -q '"op":"audit-verify"' "$LOG"

# A seal wipes the audit keys: a verification running then ends, saying so.
"$COFFER" audit verify "$T/big" >"$T/big.out" 2>&1 &
VPID=$!
sleep 0.5
ok "seal while a verification runs" "$COFFER" operator seal
wait "$VPID"
is "... the verification fails" "$?" 1
ok "... saying the store was sealed during it" grep -q 'sealed during the verification' "$T/big.out"
ok "... and unseal" "$COFFER" operator unseal --keyfile "$T/unseal.key"

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

# ---- bounded records: a long non-ASCII executable path ----
restart() {   # restart [cofferd args...]: with $T/cofferd.conf
    stop_daemon
    start_daemon --config "$T/cofferd.conf" "$@"
}
printf 'audit_rate_per_uid = 1\naudit_burst = 10\n' >"$T/cofferd.conf"
chmod 0644 "$T/cofferd.conf"
restart || { echo "Bail out! cofferd did not restart"; exit 1; }
long="$T"
for i in $(seq 15); do long="$long/$(printf '\xc3\xa9%.0s' $(seq 120))"; done
mkdir -p "$long"
cp "$RAWCLIENT" "$long/client"
ok "a client at a 3.6 KiB path of non-ASCII names is answered" sh -c '"$1" "$2" --frame 1 --replies 1 | grep -q "code=0"' \
    _ "$long/client" "$COFFER_SOCKET"
rec=$(grep '"op":"status".*"exe":"[^"]*\\u00e9' "$LOG" | tail -n 1)
ok "its record is under 6 KiB (the exe escaped to 11 KiB before)" test "${#rec}" -gt 0 -a "${#rec}" -lt 6144
ok "... its exe is cut with a visible marker and the record says truncated" \
    sh -c 'printf %s "$1" | grep -q "\\\\u00e9\.\.\.\",\"exe_file\"" && printf %s "$1" | grep -q "\"truncated\":true"' _ "$rec"
rm -rf "$T/$(printf '\xc3\xa9%.0s' $(seq 120))"

# ---- a flood from one uid is throttled, and summarized in one record ----
before=$(grep -c '"op":"status".*"uid":65534' "$LOG")
refused=0
flood_start=$SECONDS
for i in $(seq 40); do
    as_nobody "$COFFER" status >/dev/null 2>>"$T/flood.err" || refused=$((refused + 1))
done
after=$(grep -c '"op":"status".*"uid":65534' "$LOG")
flood_secs=$((SECONDS - flood_start + 1))
ok "a flood of 40 requests from nobody is throttled (audit_burst 10, then 1 a second for $flood_secs s): $refused refused" \
    test "$refused" -ge "$((40 - 10 - flood_secs))" -a "$refused" -gt 0
ok "... saying why and what to do" grep -q 'too many requests from uid 65534.*retry in a moment' "$T/flood.err"
is "... a refused request writes no record of its own" "$((after - before))" "$((40 - refused))"
# Three requests at once: at most one can find a token (one a second).
as_nobody "$RAWCLIENT" "$COFFER_SOCKET" --frame 1 --frame 1 --frame 1 --replies 3 >"$T/next.out"
n11=$(grep -c 'code=11 ' "$T/next.out")
ok "while nobody is throttled, nobody's next requests are refused with EAGAIN ($n11 of 3)" test "$n11" -ge 2
ok "... and root is still served" "$COFFER" status
pe_before=$(grep -c '"op":"protocol-error".*"uid":65534' "$LOG")
for i in 1 2 3; do
    as_nobody "$RAWCLIENT" "$COFFER_SOCKET" --hex deadbeefdeadbeefdeadbeefdeadbeef >/dev/null
done
pe_added=$(( $(grep -c '"op":"protocol-error".*"uid":65534' "$LOG") - pe_before ))
ok "malformed frames count against the same budget: 3 from nobody add $pe_added record(s)" test "$pe_added" -le 1
ok "one summary record for nobody comes within two seconds" \
    wait_until 3 grep -q '"op":"requests-refused","object":"uid:65534"' "$LOG"
sleep 1.2
# One record per uid per second at most, together counting every refusal.
sums=$(/usr/bin/python3 - "$LOG" <<'PYEOF'
import json, sys
n = total = 0
for l in open(sys.argv[1], "rb"):
    r = json.loads(l)
    if r.get("op") == "requests-refused" and r.get("object") == "uid:65534":
        assert r["rule"] == "audit_rate_per_uid" and r["result"] == "EAGAIN", r
        n += 1
        total += int(r["detail"].split()[0].split("=")[1])
print(n, total)
PYEOF
)
is "... the summaries (rule audit_rate_per_uid, EAGAIN) count every refusal" "${sums#* }" "$((refused + n11 + 3 - pe_added))"
ok "... in one record per second at most (${sums% *} over $((SECONDS - flood_start + 1)) s)" \
    test "${sums% *}" -le "$((SECONDS - flood_start + 1))"
unseal_keyfile
ok "the log still verifies" "$COFFER" audit verify

# ---- near a full disk, the reserve is root's ----
# A user's subordinate uids (rootless containers) share the user's budget,
# as they share the connection cap: a fresh uid per request is no way out.
printf 'nobody:300000:1000\n' >"$T/subuid"
chmod 0644 "$T/subuid"
printf 'audit_rate_per_uid = 1\naudit_burst = 10\nsubuid_file = %s\n' "$T/subuid" >"$T/cofferd.conf"
restart || { echo "Bail out! cofferd did not restart"; exit 1; }
sub_ok=0
for i in $(seq 10); do
    setpriv --reuid=$((300000 + i)) --regid=nogroup --clear-groups "$COFFER" status >/dev/null 2>&1 && sub_ok=$((sub_ok + 1))
done
ok "ten requests from ten of nobody's subordinate uids take nobody's burst ($sub_ok served)" test "$sub_ok" -ge 9
fails_with "... so the next one, from yet another subordinate uid, is refused as nobody's" 1 \
    'too many requests from uid 65534, with its subordinate uids' \
    setpriv --reuid=300500 --regid=nogroup --clear-groups "$COFFER" status
ok "... and so is nobody's own" sh -c '! setpriv --reuid=nobody --regid=nogroup --clear-groups "$1" status' _ "$COFFER"
ok "a uid outside every range keeps a budget of its own" \
    setpriv --reuid=301500 --regid=nogroup --clear-groups "$COFFER" status
AFS="$T/afs"
mkdir -p "$AFS"
if ! mount -t tmpfs -o size=8m,mode=0700 tmpfs "$AFS" 2>/dev/null; then
    skip "disk reserve" "cannot mount a tmpfs here"
    done_testing
    exit
fi
CLEANUP_EXTRA="umount -l '$AFS' 2>/dev/null"
printf 'audit_warn_free_mb = 6\naudit_reserve_mb = 4\n' >"$T/cofferd.conf"
restart --audit-log "$AFS/audit.log" || { echo "Bail out! cofferd did not restart"; exit 1; }
dd if=/dev/zero of="$AFS/fill1" bs=1M count=3 2>/dev/null
ok "below audit_warn_free_mb a warning is logged (priority warning)" \
    wait_until 3 grep -q '^<4>cofferd: the audit log.s file system has [0-9]* MiB free (audit_warn_free_mb 6)' \
    "$T/cofferd.log"
ok "... and users are still served above the reserve" as_nobody "$COFFER" status
dd if=/dev/zero of="$AFS/fill2" bs=1M count=2 2>/dev/null
# The free space is looked at once a second.
wait_until 5 sh -c '! setpriv --reuid=nobody --regid=nogroup --clear-groups "$1" status' _ "$COFFER"
fails_with "below audit_reserve_mb a user's request is refused, saying why" 1 'nearly full.*audit_reserve_mb' \
    as_nobody "$COFFER" status
ok "... while root's requests still pass" "$COFFER" status
ok "... and the refusals are summarized (low-disk)" \
    wait_until 3 grep -q '"object":"uid:65534".*"rule":"audit_reserve_mb","result":"ENOSPC".*low-disk=[1-9]' \
    "$AFS/audit.log"
rm -f "$AFS/fill1" "$AFS/fill2"
ok "space freed: users are served again" wait_until 5 setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$COFFER" status
stop_daemon

done_testing
