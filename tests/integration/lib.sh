# Shared by the integration tests: TAP output and a real cofferd on a temp socket.
# Source it from a test script: . "$(dirname "$0")/lib.sh"
set -u

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
COFFERD="$top_builddir/cofferd"
COFFER="$top_builddir/coffer"
RAWCLIENT="$top_builddir/tests/integration/rawclient"
CROWD="$top_builddir/tests/integration/crowd"
SESSIONTOOL="$top_builddir/tests/integration/sessiontool"

T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-test.XXXXXX")
chmod 0755 "$T"
export COFFER_SOCKET="$T/coffer.sock"
export COFFER_AUDIT_NO_JOURNAL=1
# The daemon's policy: root may do everything (as the shipped default says).
POLICY_DIR="$T/policy"
mkdir -p "$POLICY_DIR"
chmod 0755 "$POLICY_DIR"
printf '# test default\nallow * * uid:0\n' >"$POLICY_DIR/00-default.policy"
chmod 0644 "$POLICY_DIR/00-default.policy"
TAP_N=0
TAP_FAILED=0
DAEMON_PID=

cleanup() {
    stop_daemon
    [ -n "${CLEANUP_EXTRA:-}" ] && eval "$CLEANUP_EXTRA"
    rm -rf "$T"
}
trap cleanup EXIT
# A killed test (make check interrupted) still cleans up: exit runs the EXIT trap.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

ok() {   # ok DESCRIPTION COMMAND...  (passes when COMMAND exits 0)
    local d=$1; shift
    TAP_N=$((TAP_N + 1))
    if "$@" >"$T/last.out" 2>"$T/last.err"; then
        echo "ok $TAP_N - $d"
    else
        local rc=$?
        echo "not ok $TAP_N - $d (exit $rc)"
        sed 's/^/#   /' "$T/last.err" | head -20
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

fails_with() {   # fails_with DESCRIPTION EXIT_CODE PATTERN COMMAND...  (exit code and stderr pattern)
    local d=$1 want=$2 pat=$3; shift 3
    TAP_N=$((TAP_N + 1))
    "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    if [ "$rc" -eq "$want" ] && grep -qE -- "$pat" "$T/last.err"; then
        echo "ok $TAP_N - $d"
    else
        echo "not ok $TAP_N - $d (exit $rc, wanted $want and /$pat/)"
        sed 's/^/#   /' "$T/last.err" | head -20
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

# exits_out DESCRIPTION CODE PATTERN COMMAND...: exit code, and stdout matches the ERE
exits_out() {   # exits_out DESCRIPTION CODE PATTERN COMMAND...: exit code and stdout matches the ERE
    local d=$1 want=$2 pat=$3; shift 3
    TAP_N=$((TAP_N + 1))
    "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    if [ "$rc" -eq "$want" ] && grep -qE -- "$pat" "$T/last.out"; then
        echo "ok $TAP_N - $d"
    else
        echo "not ok $TAP_N - $d (exit $rc, wanted $want and stdout /$pat/)"
        { sed 's/^/#   out: /' "$T/last.out" | head -10; sed 's/^/#   err: /' "$T/last.err" | head -10; }
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

check() {   # check DESCRIPTION CONDITION-COMMAND...  (like ok, output not captured separately)
    ok "$@"
}

skip_all() { echo "1..0 # SKIP $1"; trap - EXIT; rm -rf "$T"; exit 0; }
need_root() { [ "$(id -u)" = 0 ] || skip_all "needs root"; }
done_testing() { echo "1..$TAP_N"; [ "$TAP_FAILED" -eq 0 ]; }

start_daemon() {   # start_daemon [extra cofferd args...]
    # A socket left behind (kill -9) exists before the daemon listens: then
    # wait for the daemon to say it listens.
    local stale= mark
    [ -S "$COFFER_SOCKET" ] && stale=1
    mark=$(log_mark)
    "$COFFERD" --state-dir "$T/state" --socket "$COFFER_SOCKET" --audit-log "$T/audit.log" \
        --policy-dir "$POLICY_DIR" "$@" \
        >>"$T/cofferd.log" 2>&1 &
    DAEMON_PID=$!
    local i=0
    while [ ! -S "$COFFER_SOCKET" ] || { [ -n "$stale" ] && ! log_has "$mark" 'listening on'; }; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "# cofferd did not start:"; sed 's/^/#   /' "$T/cofferd.log"
            return 1
        fi
        sleep 0.05
    done
}

stop_daemon() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    DAEMON_PID=
    rm -f "$COFFER_SOCKET"
}

kill9_daemon() {
    [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    rm -f "$COFFER_SOCKET"
}

init_keyfile() {   # a started daemon, initialized and unsealed with $T/unseal.key
    "$COFFER" operator init --keyfile "$T/unseal.key" >/dev/null 2>&1
}

# ---- more helpers ----

ok_out() {   # ok_out DESCRIPTION PATTERN COMMAND...  (exit 0 and stdout matches the ERE)
    local d=$1 pat=$2; shift 2
    TAP_N=$((TAP_N + 1))
    "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    if [ "$rc" -eq 0 ] && grep -qE -- "$pat" "$T/last.out"; then
        echo "ok $TAP_N - $d"
    else
        echo "not ok $TAP_N - $d (exit $rc, wanted 0 and stdout /$pat/)"
        { sed 's/^/#   out: /' "$T/last.out" | head -10; sed 's/^/#   err: /' "$T/last.err" | head -10; }
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

is() {   # is DESCRIPTION GOT WANT
    TAP_N=$((TAP_N + 1))
    if [ "$2" = "$3" ]; then
        echo "ok $TAP_N - $1"
    else
        echo "not ok $TAP_N - $1"
        echo "#   got:  '$2'"
        echo "#   want: '$3'"
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

skip() {   # skip DESCRIPTION REASON  (one skipped assertion)
    TAP_N=$((TAP_N + 1))
    echo "ok $TAP_N - $1 # SKIP $2"
}

note() { echo "# $*"; }

wait_until() {   # wait_until SECONDS COMMAND...  (polls every 50 ms)
    local limit=$(( $1 * 20 )) i=0; shift
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -ge $limit ] && return 1
        sleep 0.05
    done
}

unseal_keyfile() {   # unseal with $T/unseal.key (from init_keyfile)
    "$COFFER" operator unseal --keyfile "$T/unseal.key" >/dev/null 2>&1
}

reset_state() {   # stop the daemon and forget its store and audit log
    stop_daemon
    rm -rf "$T/state" "$T/audit.log"
}

log_mark() { if [ -f "$T/cofferd.log" ]; then wc -l <"$T/cofferd.log"; else echo 0; fi; }   # where the daemon log is now
log_since() { tail -n +"$(( $1 + 1 ))" "$T/cofferd.log"; }      # what it logged since a mark

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
log_has() { log_since "$1" | grep -qE -- "$2"; }                 # log_has MARK ERE
