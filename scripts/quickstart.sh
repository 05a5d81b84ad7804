#!/bin/bash
# Build coffer and run it on its embedded defaults: a dev cofferd with a
# SQLite store and a keyfile under ./dev, a demo secret stored and read back,
# and `coffer status`. The daemon keeps running; stop it with the command printed.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh
[ -x configure ] || autoreconf -fi >/dev/null 2>&1
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q
make -j"$(nproc)" >/dev/null
cd "$top"

DEV="$top/dev"
mkdir -p "$DEV"
chmod 0700 "$DEV"
export COFFER_SOCKET="$DEV/coffer.sock"
if [ -f "$DEV/cofferd.pid" ] && kill -0 "$(cat "$DEV/cofferd.pid")" 2>/dev/null; then
    echo "dev cofferd already running (pid $(cat "$DEV/cofferd.pid"))"
else
    build/cofferd --state-dir "$DEV/state" --socket "$COFFER_SOCKET" --audit-log "$DEV/audit.log" \
        --policy-dir "$top/dist/policy" \
        >"$DEV/cofferd.log" 2>&1 &
    echo $! >"$DEV/cofferd.pid"
    for _ in $(seq 100); do [ -S "$COFFER_SOCKET" ] && break; sleep 0.05; done
fi
C=build/coffer
if ! $C status --json | grep -q '"initialized":true'; then
    $C operator init --keyfile "$DEV/unseal.key"
elif $C status --json | grep -q '"sealed":true'; then
    $C operator unseal --keyfile "$DEV/unseal.key"
fi
printf 'hf_demo_%s' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" | $C put demo/hf-token
echo "--- coffer get demo/hf-token:"
$C get demo/hf-token; echo
echo "--- coffer ls:"
$C ls
echo "--- coffer status:"
$C status
echo "--- coffer audit verify:"
$C audit verify
cat <<MSG

The dev daemon is running (pid $(cat "$DEV/cofferd.pid")). Use it with:
  export COFFER_SOCKET=$COFFER_SOCKET
  build/coffer --help
Stop it with: kill \$(cat $DEV/cofferd.pid)
MSG
