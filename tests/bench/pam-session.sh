#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/pam-session.sh BUILDDIR — part of `make bench`.
#
# What pam_coffer adds to a login: pamtester runs open_session and
# close_session in one PAM handle, once per process as sshd would, through
# real libpam with pam_wrapper pointing it at service files written here
# (no /etc/pam.d file). Three stacks, in the same run and interleaved:
#   baseline  session required pam_permit.so
#   loginuid  pam_loginuid.so, pam_permit.so (a new audit session per login)
#   coffer    pam_loginuid.so, pam_coffer.so socket=... fail=closed
# against a real cofferd whose login map gives the user one secret and one
# token, so each login writes a session directory with two credentials.
# Prints ms per open+close cycle for each and the coffer/baseline ratio.
#
# Skips (exit 0, with a message) when pam_coffer.so is not built, pamtester
# or pam_wrapper is missing, or not root (cofferd serves sessions to uid 0).
# Without pam_loginuid working here, every cycle shares this script's audit
# session, set once (the line says loginuid=shared).
#
# Environment: PAM_CYCLES (default 200) per stack.
set -eu
BENCH_NAME=pam-session
. "$(dirname "$0")/lib.sh"

B=${1:?usage: pam-session.sh BUILDDIR}
CYCLES=${PAM_CYCLES:-200}
MODULE=$B/.libs/pam_coffer.so
USER_NAME=nobody

skip() {
        echo "bench pam-session skipped: $*"
        exit 0
}

case $CYCLES in
''|*[!0-9]*|0) fail "PAM_CYCLES must be a positive integer: $CYCLES" ;;
esac
for f in cofferd coffer; do
        [ -x "$B/$f" ] || fail "missing $B/$f (run: make bench)"
done
[ -f "$MODULE" ] || skip "$MODULE is not built (pam/pam.am included, Linux-PAM headers found?)"
command -v pamtester >/dev/null || skip "pamtester is not installed"
[ "$(id -u)" = 0 ] || skip "needs root: cofferd opens login sessions for uid 0 only"
PWRAP=$(ldconfig -p 2>/dev/null | awk '$1 == "libpam_wrapper.so" { print $NF; exit }')
for f in /usr/lib/*/libpam_wrapper.so /usr/lib64/libpam_wrapper.so /usr/lib/libpam_wrapper.so; do
        [ -z "$PWRAP" ] && [ -f "$f" ] && PWRAP=$f
done
[ -n "$PWRAP" ] || skip "pam_wrapper is not installed (Debian: libpam-wrapper)"
find_module() {
        for d in /usr/lib/*/security /lib/*/security /usr/lib64/security /lib64/security /usr/lib/security; do
                [ -f "$d/$1" ] && { echo "$d/$1"; return 0; }
        done
        return 1
}
PERMIT=$(find_module pam_permit.so) || skip "pam_permit.so not found"
LOGINUID=$(find_module pam_loginuid.so) || LOGINUID=
id "$USER_NAME" >/dev/null 2>&1 || skip "no user $USER_NAME"

bench_traps

now_ms() { date +%s%3N; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-pam-bench.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 0700 "$tmp/state"
mkdir -m 0755 "$tmp/policy" "$tmp/sessions" "$tmp/pam.d"
SOCK=$tmp/coffer.sock
# Credentials belong in memory: a tmpfs when we may mount one.
if mount -t tmpfs -o mode=0755,size=8m coffer-bench-sessions "$tmp/sessions" 2>/dev/null; then
        mounted=1
fi
cat >"$tmp/login.map" <<'EOF'
# ENV_VAR           FILE           OBJECT
HF_TOKEN_PATH       hf-token       secret:bench/pam/hf
BENCH_TOKEN_PATH    bench-api.jwt  token:bench-pam
EOF
cat >"$tmp/policy/50-bench.policy" <<EOF
allow read  secret:bench/pam/*  user:$USER_NAME session:login
allow issue token:bench-pam     user:$USER_NAME session:login
EOF
chmod 0644 "$tmp/login.map" "$tmp/policy/50-bench.policy"

"$B/cofferd" --state-dir "$tmp/state" --socket "$SOCK" --audit-log "$tmp/audit.log" --policy-dir "$tmp/policy" \
        --session-dir "$tmp/sessions" --login-map "$tmp/login.map" >"$tmp/cofferd.log" 2>&1 &
cofferd_pid=$!
wait_socket "$SOCK" "$cofferd_pid" "$tmp/cofferd.log"
COFFER_SOCKET=$SOCK
export COFFER_SOCKET
init_store "$B/coffer" "$tmp"
printf '%s' bench-0123456789abcdef-012345678 | "$B/coffer" put bench/pam/hf >"$tmp/put.log" 2>&1 ||
        { cat "$tmp/put.log" >&2; fail "coffer put failed"; }

printf 'session required %s\n' "$PERMIT" >"$tmp/pam.d/other"
printf 'session required %s\n' "$PERMIT" >"$tmp/pam.d/bench-baseline"

# pamtester SERVICE: one login's open_session + close_session.
pam() {
        LD_PRELOAD=$PWRAP PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$tmp/pam.d \
                pamtester "$1" "$USER_NAME" open_session close_session >>"$tmp/pamtester.log" 2>&1
}

# pam_loginuid needs CAP_AUDIT_CONTROL and kernel audit; where it cannot set
# the loginuid (or says it did without doing so, as in some containers), this
# shell gets one audit session that every cycle shares instead.
shared=
if [ -n "$LOGINUID" ]; then
        printf 'session required %s\nsession required %s\n' "$LOGINUID" "$PERMIT" >"$tmp/pam.d/bench-loginuid"
        printf 'session required %s\nsession required %s socket=%s fail=closed\n' "$LOGINUID" "$MODULE" "$SOCK" \
                >"$tmp/pam.d/bench-coffer"
        pam bench-loginuid && pam bench-coffer || LOGINUID=
fi
if [ -z "$LOGINUID" ]; then
        ( id -u "$USER_NAME" >/proc/self/loginuid ) 2>/dev/null ||
                skip "neither pam_loginuid nor this shell can set the loginuid: no audit session for cofferd to bind to"
        id -u "$USER_NAME" >/proc/self/loginuid
        shared=1
        printf 'session required %s\n' "$PERMIT" >"$tmp/pam.d/bench-loginuid"
        printf 'session required %s socket=%s fail=closed\n' "$MODULE" "$SOCK" >"$tmp/pam.d/bench-coffer"
        pam bench-coffer || { tail -n 20 "$tmp/pamtester.log" >&2; fail "a login through pam_coffer failed (see above)"; }
fi

# cycles SERVICE N: N logins; the milliseconds they took in $took.
cycles() {
        t0=$(now_ms)
        n=0
        while [ "$n" -lt "$2" ]; do
                pam "$1" || { tail -n 20 "$tmp/pamtester.log" >&2; fail "pamtester $1 failed at cycle $n (see above)"; }
                n=$((n + 1))
        done
        took=$(($(now_ms) - t0))
}

echo "bench: pam-session, $CYCLES open+close cycles per stack, user $USER_NAME, sessions on $([ -n "$mounted" ] && echo tmpfs || echo "the state disk")"
for s in bench-baseline bench-loginuid bench-coffer; do
        cycles "$s" 10 # warm-up
done
ms_base=0
ms_lu=0
ms_coffer=0
# Interleaved halves, so drift on a shared machine hits each stack alike.
first=$((CYCLES / 2))
for half in "$first" $((CYCLES - first)); do
        [ "$half" -gt 0 ] || continue
        cycles bench-baseline "$half"
        ms_base=$((ms_base + took))
        cycles bench-loginuid "$half"
        ms_lu=$((ms_lu + took))
        cycles bench-coffer "$half"
        ms_coffer=$((ms_coffer + took))
done

kill -0 "$cofferd_pid" 2>/dev/null || { tail -n 20 "$tmp/cofferd.log" >&2; fail "cofferd died during the run"; }
# Every login must really have opened and closed a session.
opened=$(grep '"op":"session-open"' "$tmp/audit.log" | grep -c '"result":"ok"' || true)
closed=$(grep '"op":"session-close"' "$tmp/audit.log" | grep -c '"result":"ok"' || true)
if [ "$opened" -lt "$CYCLES" ] || [ "$closed" -lt "$CYCLES" ]; then
        fail "the audit log shows $opened session opens and $closed closes that succeeded, expected at least $CYCLES each"
fi
left=$(find "$tmp/sessions" -mindepth 1 -maxdepth 1 | wc -l)
awk -v n="$CYCLES" -v c="$ms_coffer" -v l="$ms_lu" -v b="$ms_base" -v s="${shared:+shared}" -v o="$opened" -v cl="$closed" -v left="$left" 'BEGIN {
        printf "bench pam-session cycles=%d ms_per_cycle_coffer=%.2f ms_per_cycle_loginuid=%.2f ms_per_cycle_baseline=%.2f coffer_added_ms=%.2f loginuid=%s audit_opens=%d audit_closes=%d dirs_left=%d\n",
                n, c / n, l / n, b / n, (c - l) / n, (s == "" ? "per-login" : s), o, cl, left
        printf "ratio pam-session coffer/baseline ms_per_cycle=%.2f\n", c / b }'
