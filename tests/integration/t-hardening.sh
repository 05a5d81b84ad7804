#!/bin/bash
# The binaries are built hardened: position-independent, full RELRO with
# immediate binding (BIND_NOW), stack protector, fortified libc calls.
. "$(dirname "$0")/lib.sh"
command -v readelf >/dev/null || skip_all "needs readelf (binutils)"
real() {   # the ELF behind a libtool wrapper
    local d b; d=$(dirname "$1"); b=$(basename "$1")
    if [ -x "$d/.libs/$b" ]; then echo "$d/.libs/$b"; elif [ -x "$d/.libs/lt-$b" ]; then echo "$d/.libs/lt-$b"; else echo "$1"; fi
}
PAMSO=$(ls "$top_builddir"/.libs/pam_coffer.so 2>/dev/null | head -1)
LIBSO=$(ls "$top_builddir"/.libs/libcoffer.so.* 2>/dev/null | head -1)
for f in "$(real "$COFFERD")" "$(real "$COFFER")" $PAMSO $LIBSO; do
    n=$(basename "$f")
    ok "$n is an ELF file" sh -c 'readelf -h "$1" >/dev/null' _ "$f"
    case $n in
    *.so*) ;;
    *) ok "$n is position-independent (ELF type DYN)" sh -c 'readelf -h "$1" | grep -qE "Type:[[:space:]]+DYN"' _ "$f" ;;
    esac
    ok "$n has a GNU_RELRO segment" sh -c 'readelf -lW "$1" | grep -q GNU_RELRO' _ "$f"
    ok "$n binds all symbols at load (BIND_NOW)" sh -c 'readelf -dW "$1" | grep -qE "BIND_NOW|FLAGS.*NOW"' _ "$f"
done
ok "cofferd calls the stack protector's check" sh -c 'readelf -sW "$1" | grep -q __stack_chk_fail' _ "$(real "$COFFERD")"
ok "cofferd calls fortified libc functions (_FORTIFY_SOURCE)" \
    sh -c 'readelf -sW "$1" | grep -qE "__[a-z]+_chk@"' _ "$(real "$COFFERD")"
ok "libcoffer calls fortified libc functions (_FORTIFY_SOURCE)" \
    sh -c 'readelf -sW "$1" | grep -qE "__[a-z]+_chk@"' _ "$LIBSO"
done_testing
