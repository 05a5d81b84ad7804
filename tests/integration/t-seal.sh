#!/bin/bash
# The seal: keyfile, passphrase and Shamir unseal, wrong keys, seal, rotate,
# and automatic unseal from a systemd credential.
. "$(dirname "$0")/lib.sh"

status_json() { "$COFFER" status --json; }
restart() { stop_daemon; start_daemon "$@" || { echo "Bail out! cofferd did not start"; exit 1; }; }
put() { printf '%s' "$2" | "$COFFER" put "$1"; }
get_is() { [ "$("$COFFER" get "$1")" = "$2" ]; }   # get_is NAME VALUE

# ---- keyfile ----
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "init --keyfile" "$COFFER" operator init --keyfile "$T/unseal.key"
ok "put a value while unsealed" put seal/a value-a
fails_with "init twice is a conflict (exit 8)" 8 'already initialized' \
    "$COFFER" operator init --keyfile "$T/other.key"
restart
ok_out "restarted: sealed, keyfile method" '"sealed":true,"method":"keyfile"' status_json
head -c 32 /dev/urandom >"$T/wrong.key"; chmod 0400 "$T/wrong.key"
fails_with "a wrong keyfile is refused: integrity (exit 7) with a clear message" 7 'wrong keyfile' \
    "$COFFER" operator unseal --keyfile "$T/wrong.key"
ok_out "after a wrong keyfile it stays sealed" '"sealed":true' status_json
ok_out "the right keyfile unseals" '^unsealed$' "$COFFER" operator unseal --keyfile "$T/unseal.key"
ok "the value written before the restart reads back" get_is seal/a value-a

ok_out "operator seal" '^sealed' "$COFFER" operator seal
ok_out "status after seal: sealed" '"sealed":true' status_json
fails_with "get after seal: sealed: run \`coffer operator unseal\` (exit 4)" 4 \
    'sealed: run `coffer operator unseal`' "$COFFER" get seal/a
fails_with "put after seal is refused too (exit 4)" 4 'sealed' put seal/b nope
ok "unseal again after seal" unseal_keyfile

# ---- rotate ----
ok_out "rotate adds data-key term 2" 'new data-key term 2' "$COFFER" operator rotate
ok_out "status shows term 2" '"term":2' status_json
ok "a value written before rotate is still readable" get_is seal/a value-a
ok "a value written after rotate is readable" put seal/after-rotate value-r
restart
ok "unseal after rotate and restart" unseal_keyfile
ok_out "the new term persisted across the restart" '"term":2' status_json
ok "both terms' values read back after restart" \
    sh -c '[ "$("$1" get seal/a)" = value-a ] && [ "$("$1" get seal/after-rotate)" = value-r ]' _ "$COFFER"

# ---- credential auto-unseal (systemd LoadCredential=coffer.unseal) ----
mkdir -p "$T/creds" "$T/badcreds"
cp "$T/unseal.key" "$T/creds/coffer.unseal"
head -c 32 /dev/urandom >"$T/badcreds/coffer.unseal"
stop_daemon
mark=$(log_mark)
CREDENTIALS_DIRECTORY="$T/creds" start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok_out "a good coffer.unseal credential unseals at start" '"sealed":false' status_json
ok "the daemon logs that the credential unsealed it" log_has "$mark" 'unsealed from credential coffer.unseal'
ok "secrets are served right after start" get_is seal/a value-a
stop_daemon
mark=$(log_mark)
CREDENTIALS_DIRECTORY="$T/badcreds" start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok_out "a bad credential leaves the daemon sealed (and running)" '"sealed":true' status_json
ok "the daemon logs why the credential did not unseal" \
    log_has "$mark" 'credential coffer.unseal did not unseal.*wrong keyfile'

# ---- passphrase ----
reset_state
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "init --passphrase from stdin" sh -c 'echo "correct horse battery" | "$1" operator init --passphrase' _ "$COFFER"
ok "put with the passphrase store" put pass/a value-p
restart
ok_out "restarted: sealed, passphrase method" '"sealed":true,"method":"passphrase"' status_json
fails_with "a wrong passphrase is refused (exit 7)" 7 'wrong passphrase' \
    sh -c 'echo "incorrect horse" | "$1" operator unseal' _ "$COFFER"
ok_out "still sealed after a wrong passphrase" '"sealed":true' status_json
ok_out "the right passphrase unseals" '^unsealed$' sh -c 'echo "correct horse battery" | "$1" operator unseal' _ "$COFFER"
ok "the value reads back" get_is pass/a value-p

# Argon2id and the lease check run off the event loop: while an unseal runs,
# other clients are answered (a blocked loop would answer status only after
# the unseal, unsealed).
restart
mark=$(log_mark)
sh -c 'echo "correct horse battery" | "$1" operator unseal' _ "$COFFER" >"$T/unseal.out" 2>&1 &
upid=$!
wait_unseal_started() {
    local i=0
    until log_has "$mark" 'unseal \(passphrase\) started'; do
        i=$((i + 1)); [ $i -gt 400 ] && return 1; sleep 0.01
    done
}
ok "an unseal in progress is logged as running off the event loop" wait_unseal_started
ok_out "status is answered while the unseal runs: still sealed" '"sealed":true' status_json
fails_with "a second unseal while one runs is refused, saying to wait" 1 'already running' \
    sh -c 'echo "correct horse battery" | "$1" operator unseal' _ "$COFFER"
check "the running unseal then answers: unsealed" wait "$upid"
ok_out "...its reply says so" '^unsealed$' cat "$T/unseal.out"
ok_out "the daemon logs how long the unseal took" 'unsealed \(passphrase\) in [0-9]+ ms' log_since "$mark"
ok_out "unsealed after it" '"sealed":false' status_json
# A client that goes away while its unseal runs: the daemon does not spin on
# its hang-up (the main thread stays idle), and the unseal still happens.
main_ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/task/$DAEMON_PID/stat"; }
ok "seal" "$COFFER" operator seal
mark=$(log_mark)
echo "correct horse battery" >"$T/pass"
"$COFFER" operator unseal <"$T/pass" >/dev/null 2>&1 &
upid=$!
ok "an unseal is running" wait_unseal_started
kill -KILL "$upid" 2>/dev/null
wait "$upid" 2>/dev/null
t0=$(main_ticks)
sleep 0.3
t1=$(main_ticks)
ok "its client killed, the daemon's loop does not spin ($((t1 - t0)) ticks in 0.3 s)" test "$((t1 - t0))" -lt 5
ok "... and the unseal it asked for still takes place" wait_until 10 sh -c '"$1" status --json | grep -q "\"sealed\":false"' _ "$COFFER"
# A seal while an unseal runs wins: the unseal's result is thrown away.
ok "seal" "$COFFER" operator seal
mark=$(log_mark)
sh -c 'echo "correct horse battery" | "$1" operator unseal' _ "$COFFER" >"$T/unseal.out" 2>&1 &
upid=$!
ok "a second unseal is running" wait_unseal_started
ok "seal while it runs" "$COFFER" operator seal
unseal_failed() { ! wait "$upid"; }
check "the unseal fails: the store was sealed meanwhile" unseal_failed
ok_out "...saying so" 'sealed while this unseal ran' cat "$T/unseal.out"
ok_out "and the store stays sealed" '"sealed":true' status_json

# ---- shamir 3 of 5 ----
reset_state
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok "init --shares 5 --threshold 3" sh -c '"$1" operator init --shares 5 --threshold 3 >"$2"' _ "$COFFER" "$T/shares"
is "init printed 5 shares of 66 hex digits" "$(grep -cxE '[0-9a-f]{66}' "$T/shares")" 5
share() { sed -n "${1}p" "$T/shares"; }
unseal_share() { printf '%s\n' "$1" | "$COFFER" operator unseal; }
ok "put with the shamir store" put sham/a value-s
restart
ok_out "restarted: sealed, shamir 0/3" '"sealed":true,"method":"shamir","progress":0,"threshold":3' status_json
ok_out "share 1 accepted: 1/3" 'share accepted: 1/3' unseal_share "$(share 1)"
fails_with "the same share again is rejected" 8 'already submitted' unseal_share "$(share 1)"
ok_out "share 4 accepted: 2/3" 'share accepted: 2/3' unseal_share "$(share 4)"
ok_out "status shows progress 2/3" '^Unseal progress: 2/3 shares' "$COFFER" status
fails_with "two of three shares: still sealed, get refused (exit 4)" 4 'sealed: run `coffer operator unseal`' \
    "$COFFER" get sham/a
ok_out "share 2 completes the threshold: unsealed" '^unsealed$' unseal_share "$(share 2)"
ok "the value reads back" get_is sham/a value-s

restart
ok_out "a wrong share set: share 3 accepted 1/3" 'share accepted: 1/3' unseal_share "$(share 3)"
ok_out "share 5 accepted 2/3" 'share accepted: 2/3' unseal_share "$(share 5)"
forged="01$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fails_with "a forged third share does not reconstruct the key: rejected (exit 7)" 7 'do not reconstruct' \
    unseal_share "$forged"
ok_out "progress was reset to 0/3 and the store is still sealed" '"sealed":true,"method":"shamir","progress":0' status_json
fails_with "a share that is not hex is a usage error (exit 2)" 2 '66 hex digits' unseal_share "not-a-share"
ok "three good shares after the reset unseal" \
    sh -c 'for s in "$@"; do printf "%s\n" "$s" | "$0" operator unseal || exit 1; done' "$COFFER" \
    "$(share 5)" "$(share 1)" "$(share 3)"
ok_out "unsealed after the retry" '"sealed":false' status_json

done_testing
