#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/bench/security.sh [SRCDIR] — the overall exposure systemd-analyze
# security gives cofferd.service (0.0 best, 10.0 worst), as one bench line:
#
#   bench systemd-analyze exposure=1.2
#
# A property of the unit file, not a measurement: the same file gives the
# same figure on the same systemd version. tests/integration/t-units.sh
# holds it at 2.0 or less.
set -eu

SRC=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v systemd-analyze >/dev/null || { echo "bench: systemd-analyze not installed" >&2; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-security.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The offline review reads the unit file only; ExecStart= need not exist.
sed 's|@sbindir@|/usr/sbin|g' "$SRC/dist/systemd/cofferd.service.in" >"$tmp/cofferd.service"
systemd-analyze security --offline=yes --no-pager "$tmp/cofferd.service" >"$tmp/out" 2>&1 || {
        cat "$tmp/out" >&2
        echo "bench: systemd-analyze security --offline=yes failed (needs systemd 252 or newer)" >&2
        exit 1
}
x=$(sed -n 's/.*Overall exposure level for cofferd\.service: \([0-9.]*\).*/\1/p' "$tmp/out")
[ -n "$x" ] || { cat "$tmp/out" >&2; echo "bench: no overall exposure figure in the output" >&2; exit 1; }
echo "bench systemd-analyze exposure=$x"
