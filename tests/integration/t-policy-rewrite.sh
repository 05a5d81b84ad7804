#!/bin/bash
# A policy file rewritten in place (as cp does: truncate, then write) while
# the daemon reloads: a reload either reads the whole file or is refused and
# the old policy stays; it never puts a policy in force that lacks the deny
# at the end of the file. Atomic rename is the documented way to install one.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
# On tmpfs where there is one: an ext4 truncate can wait on writeback for
# longer than the daemon's quiet time, which no reader can tell from a
# finished write (coffer.policy(5) says so); this tests what the daemon does.
if [ -d /dev/shm ] && SHM=$(mktemp -d /dev/shm/coffer-policy.XXXXXX); then
    CLEANUP_EXTRA="rm -rf $SHM; ${CLEANUP_EXTRA:-}"
    chmod 0755 "$SHM"
    cp -p "$POLICY_DIR/00-default.policy" "$SHM/"
    POLICY_DIR=$SHM
fi
F=$POLICY_DIR/20-team.policy
# Five allows, then the deny the rewrite must not drop (a line boundary between
# the two halves, so the first half alone parses).
HEAD=$(for i in 1 2 3 4 5; do printf 'allow read secret:team/%s/* user:root\n' "$i"; done)
TAIL='deny read secret:team/** user:nobody'
WHOLE=7   # the default's rule, five allows, the deny
printf '%s\n%s\n' "$HEAD" "$TAIL" >"$F"
chmod 0644 "$F"

# rewriter SECONDS HALF_PAUSE IDLE_MAX: rewrite $F in place for SECONDS, the
# second half HALF_PAUSE seconds after the first, then idle up to IDLE_MAX.
rewriter() {
    "$PY" - "$F" "$1" "$2" "$3" "$HEAD" "$TAIL" <<'EOF'
import os, random, sys, time
path, secs, pause, idle, head, tail = sys.argv[1], *map(float, sys.argv[2:5]), sys.argv[5], sys.argv[6]
end = time.monotonic() + secs
while time.monotonic() < end:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, (head + "\n").encode())
    time.sleep(pause)
    os.write(fd, (tail + "\n").encode())
    os.close(fd)
    time.sleep(random.uniform(0, idle))
EOF
}

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
ok_out "the whole file is in force: $WHOLE rules" "^policy reloaded: $WHOLE rules" "$COFFER" policy reload

# Reload while the file is rewritten: count what each reload put in force.
rewriter 8 0.03 0.4 &
W=$!
whole=0 refused=0 partial=
while kill -0 "$W" 2>/dev/null; do
    out=$("$COFFER" policy reload 2>&1); rc=$?
    if [ "$rc" -ne 0 ]; then
        case $out in *"kept changing while it was read"*) refused=$((refused + 1)) ;; *) partial="$partial [exit $rc: $out]" ;; esac
    elif [ "$out" = "policy reloaded: $WHOLE rules" ]; then
        whole=$((whole + 1))
    else
        partial="$partial [$out]"
    fi
done
wait "$W"
note "during the rewrite: $whole whole reloads, $refused refused"
is "no reload during an in-place rewrite put a policy without the deny in force" "${partial:-none}" none
check "some reloads during the rewrite read the whole file" [ "$whole" -gt 0 ]
ok_out "after the rewrite the whole file is in force" "^policy reloaded: $WHOLE rules" "$COFFER" policy reload

# A file that never stops changing is refused, saying what to do; the old policy stays.
rewriter 5 0.02 0.02 &
W=$!
sleep 0.1
fails_with "a reload of a file that keeps changing is refused, pointing at rename" 1 \
    "20-team\\.policy: kept changing while it was read; write policy files under another name and rename them into place" \
    "$COFFER" policy reload
wait "$W"
ok_out "... once it settles, the whole file loads" "^policy reloaded: $WHOLE rules" "$COFFER" policy reload

# The documented way: write elsewhere in the directory, rename into place.
printf '%s\n%s\n' "$HEAD" "$TAIL" >"$POLICY_DIR/.20-team.policy.new"
chmod 0644 "$POLICY_DIR/.20-team.policy.new"
mv "$POLICY_DIR/.20-team.policy.new" "$F"
ok_out "a file renamed into place loads whole" "^policy reloaded: $WHOLE rules" "$COFFER" policy reload

# A deny moved from one file into a new one (both renamed into place) while
# a reload reads the directory: the reload must not put in force the old
# file's new version without the new file. A fresh file at the front makes
# the reload wait its quiet time, and the move lands in that wait.
put_file() {   # put_file NAME TEXT: write under another name, rename into place
    printf '%s\n' "$2" >"$POLICY_DIR/.$1.new"
    chmod 0644 "$POLICY_DIR/.$1.new"
    mv "$POLICY_DIR/.$1.new" "$POLICY_DIR/$1"
}
put_file 30-a.policy "$(printf 'allow read secret:mv/* user:nobody\ndeny read secret:mv/secret user:nobody')"
ok_out "a file with an allow and a deny loads" "^policy reloaded: $((WHOLE + 2)) rules" "$COFFER" policy reload
printf 'deny read secret:mv/secret user:nobody\n' >"$POLICY_DIR/.40-b.new"
printf 'allow read secret:mv/* user:nobody\n' >"$POLICY_DIR/.30-a.new"
chmod 0644 "$POLICY_DIR/.40-b.new" "$POLICY_DIR/.30-a.new"
sleep 0.5
put_file 05-fresh.policy '# just written'
"$COFFER" policy reload >"$T/move.out" 2>&1 &
RP=$!
sleep 0.1
mv "$POLICY_DIR/.40-b.new" "$POLICY_DIR/40-b.policy"
mv "$POLICY_DIR/.30-a.new" "$POLICY_DIR/30-a.policy"
wait "$RP"
move_rc=$?
move_ok() {   # refused, or both files whole: never the allow without the deny
    if [ "$move_rc" -ne 0 ]; then grep -q 'added, removed or renamed while the policy was read' "$T/move.out"
    else grep -q "^policy reloaded: $((WHOLE + 2)) rules" "$T/move.out"; fi
}
check "a reload while a deny moves into a new file is refused, or has both files ($(head -c 120 "$T/move.out"))" move_ok
ok_out "... and the next reload has both" "^policy reloaded: $((WHOLE + 2)) rules" "$COFFER" policy reload

done_testing
