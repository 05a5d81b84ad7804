#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/session-rm.sh BUILDDIR — part of `make bench`.
#
# A login session's directory belongs to its user, who may make it writable
# and fill it. cofferd removes it when the session ends, in slices between
# requests. This measures what that costs everybody else: a client sends
# STATUS requests back to back on one connection and records each round
# trip, first for 2 s with nothing else going on (quiet), then while cofferd
# removes a session directory holding RM_FILES files (default 200000) and a
# chain of RM_NESTED nested directories (default 200). Prints
#   bench session-rm files=N ms_removal=T
#   ... quiet p99_ms= max_ms= ... during p99_ms= max_ms=
#   ratio session-rm during/quiet p99=X max=Y
#
# Skips (exit 0, with a message) when not root (sessions are opened by uid 0
# only) or the user nobody is missing. Mounts a tmpfs for the sessions.
set -eu
BENCH_NAME=session-rm
. "$(dirname "$0")/lib.sh"

B=${1:?usage: session-rm.sh BUILDDIR}
FILES=${RM_FILES:-200000}
NESTED=${RM_NESTED:-200}
PY=/usr/bin/python3
USER_NAME=nobody

skip() {
        echo "bench session-rm skipped: $*"
        exit 0
}
case $FILES:$NESTED in
*[!0-9:]*|:*|*:|0:*) fail "RM_FILES must be a positive integer and RM_NESTED a whole number: $FILES $NESTED" ;;
esac
for f in cofferd coffer tests/integration/sessiontool; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make bench)"
done
[ "$(id -u)" = 0 ] || skip "needs root: cofferd opens login sessions for uid 0 only"
id "$USER_NAME" >/dev/null 2>&1 || skip "no user $USER_NAME"
[ -x "$PY" ] || skip "no $PY"

bench_traps

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-rm-bench.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 0700 "$tmp/state"
mkdir -m 0755 "$tmp/policy" "$tmp/sessions"
mount -t tmpfs -o mode=0755,size=512m coffer-bench-rm "$tmp/sessions" 2>/dev/null && mounted=1
SOCK=$tmp/coffer.sock
# No sweep: the session ends when this script closes it.
printf 'session_check_interval = 0\nmax_connections_per_uid = 64\n' >"$tmp/cofferd.conf"
chmod 0644 "$tmp/cofferd.conf"
"$B/cofferd" --state-dir "$tmp/state" --socket "$SOCK" --audit-log "$tmp/audit.log" --policy-dir "$tmp/policy" \
        --session-dir "$tmp/sessions" --config "$tmp/cofferd.conf" >"$tmp/cofferd.log" 2>&1 &
cofferd_pid=$!
wait_socket "$SOCK" "$cofferd_pid" "$tmp/cofferd.log"
COFFER_SOCKET=$SOCK
export COFFER_SOCKET
init_store "$B/coffer" "$tmp"

# The session: opened from a fresh audit session, held open.
sh -c 'echo 0 >/proc/self/loginuid 2>/dev/null; exec "$0" open "$1" --hold' "$B/tests/integration/sessiontool" \
        "$USER_NAME" >"$tmp/session.out" 2>&1 &
holder=$!
pids=$holder
i=0
until grep -q '^dir=' "$tmp/session.out"; do
        i=$((i + 1))
        [ "$i" -le 100 ] || { cat "$tmp/session.out" >&2; fail "the session did not open"; }
        sleep 0.1
done
ID=$(sed -n 's/^id=//p' "$tmp/session.out")
DIR=$(sed -n 's/^dir=//p' "$tmp/session.out")

# The user fills it.
setpriv --reuid="$USER_NAME" --regid=nogroup --clear-groups "$PY" - "$DIR" "$FILES" "$NESTED" <<'EOF'
import os, sys
d, n, nested = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.chmod(d, 0o700)
os.mkdir(os.path.join(d, "junk"))
for i in range(n):
    os.close(os.open(os.path.join(d, "junk", "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o600))
p = d
for i in range(nested):
    p = os.path.join(p, "d")
    os.mkdir(p)
EOF

# probe SECONDS OUT: STATUS round trips on one connection for SECONDS (or
# until the file OUT.stop exists), the times in ms written to OUT.
cat >"$tmp/probe.py" <<'EOF'
import os, socket, struct, sys, time
path, secs, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
frame = struct.pack(">IHHII", 0x434f4652, 1, 1, 1, 0)
times = []
end = time.monotonic() + secs
while time.monotonic() < end and not os.path.exists(out + ".stop"):
    t = time.monotonic()
    s.sendall(frame)
    data = b""
    while len(data) < 16 or len(data) < 16 + struct.unpack(">I", data[12:16])[0]:
        b = s.recv(65536)
        if not b:
            sys.exit("cofferd closed the connection")
        data += b
    times.append((time.monotonic() - t) * 1000)
open(out, "w").write("\n".join("%.3f" % x for x in times) + "\n")
EOF
stats() {
        sort -n "$1" | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1;
                printf "n=%d p99_ms=%.2f max_ms=%.2f", NR, v[i], v[NR] }'
}
"$PY" "$tmp/probe.py" "$SOCK" 2 "$tmp/quiet"

"$PY" "$tmp/probe.py" "$SOCK" 600 "$tmp/during" &
probe=$!
sleep 0.2
t0=$(date +%s%3N)
"$B/tests/integration/sessiontool" close "$ID" >/dev/null
i=0
while [ -e "$DIR" ]; do
        i=$((i + 1))
        [ "$i" -le 12000 ] || fail "the session directory is still there after 120 s"
        sleep 0.01
done
t1=$(date +%s%3N)
sleep 0.2
touch "$tmp/during.stop"
wait "$probe"

q=$(stats "$tmp/quiet")
dd=$(stats "$tmp/during")
echo "bench session-rm files=$FILES nested=$NESTED ms_removal=$((t1 - t0)) sessions_on=$([ -n "$mounted" ] && echo tmpfs || echo disk)"
echo "bench session-rm quiet $q during $dd"
qp=$(echo "$q" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/') qm=$(echo "$q" | sed 's/.*max_ms=\([0-9.]*\).*/\1/')
dp=$(echo "$dd" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/') dm=$(echo "$dd" | sed 's/.*max_ms=\([0-9.]*\).*/\1/')
awk -v qp="$qp" -v qm="$qm" -v dp="$dp" -v dm="$dm" \
        'BEGIN { printf "ratio session-rm during/quiet p99=%.2f max=%.2f\n", dp / qp, dm / qm }'
