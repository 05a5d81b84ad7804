#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run each built libFuzzer target for a short while from its seed corpus.
#   run-smoke.sh BUILDDIR SRCDIR      (FUZZ_SECONDS, default 20, per target)
# Prints one line per target, "fuzz NAME: ok (N execs)" or the crash, and
# exits non-zero if any target crashed. The corpus is copied to a temporary
# directory so the source tree is never written; crash inputs are kept in
# BUILDDIR/tests/fuzz/ so they can be replayed.
set -u

if [ $# -ne 2 ]; then
        echo "usage: $0 BUILDDIR SRCDIR" >&2
        exit 2
fi
builddir=$1
srcdir=$2
seconds=${FUZZ_SECONDS:-20}
case $seconds in
''|*[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

failed=0
ran=0
for name in frame body audit policy jwt loginmap creds subuid; do
        bin=$builddir/tests/fuzz/fuzz-$name
        if [ ! -x "$bin" ]; then
                echo "fuzz $name: skipped (not built: $bin)"
                continue
        fi
        ran=$((ran + 1))
        work=$tmp/$name
        mkdir -p "$work/corpus" "$work/artifacts"
        seeds=$srcdir/tests/fuzz/corpus/$name
        if [ -d "$seeds" ]; then
                cp -R "$seeds/." "$work/corpus/"
        fi
        log=$work/log
        "$bin" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
                -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        if [ $rc -eq 0 ]; then
                echo "fuzz $name: ok (${execs:-?} execs)"
                continue
        fi
        failed=1
        keep=$builddir/tests/fuzz
        saved=
        for a in "$work"/artifacts/*; do
                [ -f "$a" ] || continue
                cp "$a" "$keep/fuzz-$name-$(basename "$a")"
                saved="$saved $keep/fuzz-$name-$(basename "$a")"
        done
        reason=$(grep -m 1 -E '^==[0-9]+==ERROR|^SUMMARY:|runtime error:|deadly signal|out-of-memory|timeout' "$log")
        echo "fuzz $name: CRASH (exit $rc): ${reason:-see log below}"
        [ -n "$saved" ] && echo "#   input:$saved (replay: $bin FILE)"
        grep -E '^==[0-9]+==|^ *#[0-9]+ |^SUMMARY:|runtime error:' "$log" | head -n 40 | sed 's/^/#   /'
done

if [ $ran -eq 0 ]; then
        echo "fuzz: no targets built in $builddir/tests/fuzz (configure with CC=clang --enable-fuzzing)" >&2
        exit 77
fi
exit $failed
