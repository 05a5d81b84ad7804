#!/bin/bash
# Build coffer and run every test: a normal build, an ASan+UBSan build (both
# with warnings as errors), a short fuzz smoke, and make distcheck (counted
# as one test). Ends with one line: N passed, N failed, N skipped.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh || { echo "dependency install failed"; echo "0 passed, 1 failed"; exit 1; }
autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; echo "0 passed, 1 failed"; exit 1; }
J=$(nproc)
status=0
logs=()

run_suite() {   # run_suite DIR CONFIGURE-ARGS...
    local dir=$1; shift
    rm -rf "$dir"; mkdir -p "$dir"
    ( cd "$dir" && "$top/configure" -q "$@" && make -j"$J" >/dev/null ) || { echo "build in $dir failed"; return 1; }
    ( cd "$dir" && AM_COLOR_TESTS=no make -j"$J" check >"$dir/check.out" 2>&1 )
    local rc=$?
    grep -E '^(PASS|FAIL|SKIP|ERROR|XFAIL|XPASS|# )' "$dir/check.out" | grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR)|^(FAIL|ERROR)' | sed "s|^|[$(basename "$dir")] |"
    [ $rc -eq 0 ] || { grep -E '^(not ok|FAIL|ERROR)' "$dir"/tests/*/*.log 2>/dev/null | head -40; }
    logs+=("$dir/check.out")
    return $rc
}

echo "== build and test"
run_suite "$top/build-ci" --enable-werror || status=1
echo "== build and test with AddressSanitizer + UndefinedBehaviorSanitizer"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite "$top/build-san" --enable-werror --enable-sanitizers CFLAGS="-O1 -g" || status=1

echo "== fuzz smoke"
fuzz_pass=0; fuzz_fail=0
rm -rf "$top/build-fuzz"; mkdir -p "$top/build-fuzz"
if ( cd "$top/build-fuzz" && CC=clang "$top/configure" -q --enable-werror --enable-fuzzing && make -j"$J" fuzz-smoke ) >"$top/build-fuzz/fuzz.out" 2>&1; then :; else status=1; fi
grep -E '^fuzz ' "$top/build-fuzz/fuzz.out" || tail -20 "$top/build-fuzz/fuzz.out"
fuzz_pass=$(grep -cE '^fuzz .*: ok' "$top/build-fuzz/fuzz.out")
fuzz_fail=$(grep -ciE '^fuzz .*: (fail|crash)' "$top/build-fuzz/fuzz.out")
[ -s "$top/build-fuzz/fuzz.out" ] && ! grep -qE '^fuzz ' "$top/build-fuzz/fuzz.out" && fuzz_fail=$((fuzz_fail + 1))

echo "== make distcheck"
dc_pass=0; dc_fail=0
if ( cd "$top/build-ci" && make -j"$J" distcheck >"$top/build-ci/distcheck.out" 2>&1 ); then
    echo "distcheck: ok"; dc_pass=1
else
    echo "distcheck: FAILED"; tail -30 "$top/build-ci/distcheck.out"; dc_fail=1; status=1
fi

sum() { awk -v k="$1" '$1=="#" && $2==k":" {s+=$3} END {print s+0}' "${logs[@]}"; }
pass=$(( $(sum PASS) + fuzz_pass + dc_pass ))
fail=$(( $(sum FAIL) + $(sum ERROR) + $(sum XPASS) + fuzz_fail + dc_fail ))
skip=$(sum SKIP)
[ "$fail" -eq 0 ] || status=1
echo "$pass passed, $fail failed, $skip skipped"
exit $status
