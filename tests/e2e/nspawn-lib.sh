# Shared by the tests that boot a real systemd with systemd-nspawn: the
# machine's names and cgroups, cleanup, and the debootstrapped rootfs cached
# in ${COFFER_NSPAWN_CACHE:-/var/cache/coffer-tests}. Source it after
# tests/integration/lib.sh and after setting CG (the cgroup2 mount).

# nspawn_setup PREFIX: MACHINE, SLICE, SCOPE for this run; cleanup on exit
# (and on HUP/INT/TERM, so the container goes too).
nspawn_setup() {
    S=$$
    MACHINE=$1$S
    SLICE=$MACHINE.slice
    SCOPE=machine-$MACHINE.scope
    CACHE=${COFFER_NSPAWN_CACHE:-/var/cache/coffer-tests}
    NSPAWN_PID=
    BUILD_TMP=
    NSPAWN_RUNDIRS=
    local d
    for d in /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn/unix-export \
        /run/systemd/nspawn; do
        [ -e "$d" ] || NSPAWN_RUNDIRS="$NSPAWN_RUNDIRS $d"
    done
    CLEANUP_EXTRA=nspawn_cleanup
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

rm_cgroup_tree() {   # rm_cgroup_tree DIR: every (empty) cgroup under DIR, then DIR
    [ -d "$1" ] || return 0
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        find "$1" -depth -type d -exec rmdir {} + 2>/dev/null
        [ -d "$1" ] || return 0
        sleep 0.2
    done
}

nspawn_cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # timeout(1) passes TERM on to nspawn, which shuts the container down,
        # and KILLs it 10 s later if it has not.
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    rm_cgroup_tree "$CG/$SLICE"
    # a hybrid host: nspawn mirrors its cgroups in the name=systemd hierarchy
    [ "$CG" != /sys/fs/cgroup/systemd ] && rm_cgroup_tree "/sys/fs/cgroup/systemd/$SLICE"
    rmdir "/run/systemd/nspawn/propagate/$MACHINE" "/run/systemd/nspawn/unix-export/$MACHINE" 2>/dev/null
    local d
    for d in $NSPAWN_RUNDIRS; do rmdir "$d" 2>/dev/null; done   # only what nspawn made for us
    [ -n "$BUILD_TMP" ] && rm -rf "$BUILD_TMP"
}

# nspawn_rootfs NAME PACKAGES: ROOTFS=$CACHE/NAME, debootstrapped once
# (--variant=minbase --include=PACKAGES bookworm) in a temporary directory
# there and renamed into place; skips the test when it cannot be built.
nspawn_rootfs() {
    ROOTFS=$CACHE/$1
    if [ ! -x "$ROOTFS/usr/lib/systemd/systemd" ] || [ ! -d "$ROOTFS/var/log/journal" ]; then
        local debootstrap why
        debootstrap=$(command -v debootstrap) ||
            skip_all "no cached rootfs in $ROOTFS and debootstrap is not installed (Debian: apt-get install debootstrap)"
        mkdir -p "$CACHE" || skip_all "cannot create $CACHE"
        BUILD_TMP=$(mktemp -d "$CACHE/.$1.XXXXXX") || skip_all "cannot write to $CACHE"
        note "building the container rootfs once (debootstrap bookworm, a minute or two) into $ROOTFS"
        # COFFER_DEBOOTSTRAP_MIRROR: a Debian mirror URL, else debootstrap's default
        if ! timeout 900 "$debootstrap" --variant=minbase --include="$2" bookworm "$BUILD_TMP/rootfs" \
            ${COFFER_DEBOOTSTRAP_MIRROR:+"$COFFER_DEBOOTSTRAP_MIRROR"} >"$T/debootstrap.log" 2>&1; then
            why=$(grep -E '^(E|W):' "$T/debootstrap.log" | tail -1)
            rm -rf "$BUILD_TMP"   # skip_all runs no cleanup
            skip_all "cannot build the container rootfs with debootstrap (no network?): ${why:-$(tail -1 "$T/debootstrap.log")}"
        fi
        # a persistent journal, to read the container's side after it stopped
        mkdir -p "$BUILD_TMP/rootfs/var/log/journal"
        # rename(2) into place; if another run got there first, use its tree
        mv -T "$BUILD_TMP/rootfs" "$ROOTFS" 2>/dev/null || note "another run built $ROOTFS first: using it"
        rm -rf "$BUILD_TMP"
        BUILD_TMP=
    fi
    [ -x "$ROOTFS/usr/lib/systemd/systemd" ] || skip_all "no usable rootfs in $ROOTFS"
}

# nspawn_boot EXTRA_ARGS...: boot systemd from $ROOTFS in $CG/$SLICE/$SCOPE
# (the cgroup must exist) with --keep-unit (no machined; nspawn makes
# payload/ and supervisor/ under it) and --read-only --volatile=state (the
# cached tree is never written, /var is a tmpfs, so runs may share it), give
# up after $BOOT_TIMEOUT; output in $T/nspawn.log, exit status in nspawn_rc,
# wall time in nspawn_secs.
nspawn_boot() {
    local t0
    t0=$(date +%s%N)
    timeout -k 10 "$BOOT_TIMEOUT" sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$SLICE/$SCOPE" \
        "$NSPAWN" -q -D "$ROOTFS" --machine="$MACHINE" --boot --register=no --keep-unit --console=pipe \
        --read-only --volatile=state "$@" >"$T/nspawn.log" 2>&1 </dev/null &
    NSPAWN_PID=$!
    wait "$NSPAWN_PID"
    nspawn_rc=$?
    NSPAWN_PID=
    nspawn_secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
}
