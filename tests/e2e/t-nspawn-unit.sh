#!/bin/bash
# End to end: the shipped systemd integration, as shipped, under a REAL
# systemd (252, Debian bookworm) booted in a systemd-nspawn container:
# cofferd.service (made from dist/systemd/cofferd.service.in, full sandbox:
# User=coffer, ambient capabilities, SystemCallFilter=, ProtectSystem=strict,
# PrivateNetwork=, MemoryDenyWriteExecute=, ...) started by cofferd.socket and
# cofferd-creds.socket on the first connection, with dist/sysusers.d and
# dist/tmpfiles.d applied by the container's own systemd-sysusers.service and
# systemd-tmpfiles-setup.service at boot. tests/integration/t-units.sh can only
# rebuild the sandbox by hand; tests/e2e/t-nspawn.sh boots systemd but runs
# cofferd on the host. Here cofferd runs in the container, as systemd runs it.
#
# Installed into the container (nothing else is changed):
#   /usr/local     this build's cofferd (sbin/), coffer (bin/, the real binary
#                  from .libs/) and libcoffer.so.1 (lib/): a read-only bind
#                  mount of a scratch directory, as `make install` would put
#                  them with the default prefix. The unit is made from the .in
#                  with sbindir=/usr/local/sbin, as the Makefile does.
#   /etc           a scratch copy of the rootfs's /etc (sysusers must write
#                  passwd and group; without /etc/.updated, so that
#                  ConditionNeedsUpdate=/etc lets systemd-sysusers.service run
#                  at boot), with the four units in /etc/systemd/system, the
#                  two sockets enabled (sockets.target.wants), sysusers.d and
#                  tmpfiles.d files in /etc/sysusers.d and /etc/tmpfiles.d, and
#                  /etc/coffer: a policy (root may do everything; hf/* to
#                  trainer@*.service) and a creds map (hf-token -> hf/token).
#   the driver     tests/e2e/nspawn-unit/ at /run/coffer-e2e (read-only):
#                  coffer-e2e-driver.service runs driver.sh, which talks to
#                  cofferd only through /run/coffer/coffer.sock (init, put,
#                  status, audit verify), starts trainer@1.service and
#                  other@1.service (LoadCredential=hf-token:/run/coffer/
#                  creds.sock), reads /proc/PID of the daemon, stops the
#                  service, and writes everything to /run/coffer-out (a host
#                  directory); then the container powers itself off.
#
# A build with the default prefix (/usr/local) compiles in the store
# /usr/local/var/lib/coffer and the configuration /usr/local/etc/coffer,
# while the unit's StateDirectory= and tmpfiles.d are /var/lib/coffer and
# /etc/coffer (what cofferd(8) documents, and what a build configured with
# --sysconfdir=/etc --localstatedir=/var compiles in). Such a build gets, in
# the container, a /usr/local/etc/coffer/cofferd.conf naming the unit's
# directories (state_dir, policy_dir, creds_map, login_map), and the test
# says so. (A symbolic link /usr/local/var -> /var would not do: cofferd opens
# its store with SQLITE_OPEN_NOFOLLOW, which refuses a link anywhere in the
# path; and ProtectSystem=strict leaves only the unit's directories writable.)
#
# The container has its own network namespace (--private-network): nspawn
# then grants it CAP_NET_ADMIN there, which systemd needs to bring up the
# loopback device of the service's PrivateNetwork= namespace, as on a host.
# The container gets CAP_IPC_LOCK (--capability=): systemd-nspawn leaves it
# out of a container's bounding set by default, and a host's systemd has it.
#
# Needs root, systemd-nspawn (Debian: systemd-container), debootstrap, a
# writable cgroup2 hierarchy, a cofferd that runs on Debian 12's libraries
# (not a sanitizer build), and once the network to build the rootfs:
# debootstrap --variant=minbase --include=systemd,dbus,libsodium23,
# libsqlite3-0,libcap2 bookworm, cached in
# ${COFFER_NSPAWN_CACHE:-/var/cache/coffer-tests}/bookworm-systemd-cofferd
# (built in a temporary directory there and renamed into place; delete it to
# rebuild). The container runs it read-only (--read-only --volatile=state),
# so the cache is never changed and runs may share it. Everything else (the
# container, its cgroups, temp dirs) is removed on exit, pass or fail.
. "$(dirname "$0")/../integration/lib.sh"

need_root
E2E=$top_srcdir/tests/e2e/nspawn-unit
DIST=$top_srcdir/dist
NSPAWN=$(command -v systemd-nspawn) ||
    skip_all "systemd-nspawn is not installed (Debian: apt-get install systemd-container)"
for f in "$E2E/driver.sh" "$E2E/coffer-e2e-driver.service" "$E2E/trainer@.service" "$E2E/other@.service" \
    "$DIST/systemd/cofferd.service.in" "$DIST/systemd/cofferd.socket" "$DIST/systemd/cofferd-creds.socket" \
    "$DIST/systemd/run-coffer-sessions.mount" "$DIST/sysusers.d/coffer.conf" "$DIST/tmpfiles.d/coffer.conf"; do
    [ -f "$f" ] || skip_all "missing $f"
done
CG=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
[ -n "$CG" ] && [ -w "$CG/cgroup.procs" ] || skip_all "needs a writable cgroup2 hierarchy"

# ---- this build: real binaries, and where it looks for its files ----
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }
is_elf "$COFFERD" || skip_all "$COFFERD is not an ELF binary (not built, or a libtool wrapper)"
CLIENT=$top_builddir/.libs/coffer
is_elf "$CLIENT" || CLIENT=$COFFER   # a build without libtool wrappers
is_elf "$CLIENT" || skip_all "no coffer binary in $top_builddir/.libs"
LIBCOFFER=$top_builddir/.libs/libcoffer.so.1
[ -e "$LIBCOFFER" ] || skip_all "no $LIBCOFFER"
# The build's directories, as configure set them (${prefix}-relative).
mkvar() { sed -n "s/^$1 = //p" "$top_builddir/Makefile" | head -1; }
prefix=$(mkvar prefix)
exec_prefix=$(mkvar exec_prefix)
eval "exec_prefix=\"$exec_prefix\""
eval "localstatedir=\"$(mkvar localstatedir)\""
eval "sysconfdir=\"$(mkvar sysconfdir)\""
grep -aqF "$localstatedir/lib/coffer" "$COFFERD" && grep -aqF "$sysconfdir/coffer/policy.d" "$COFFERD" ||
    skip_all "cannot tell where this cofferd looks for its store and policy (localstatedir '$localstatedir', sysconfdir '$sysconfdir')"

. "$(dirname "$0")/nspawn-lib.sh"
nspawn_setup cfnspu
BOOT_TIMEOUT=${COFFER_NSPAWN_TIMEOUT:-90}

# ---- the rootfs, built once: systemd and cofferd's runtime libraries ----
nspawn_rootfs bookworm-systemd-cofferd systemd,dbus,libsodium23,libsqlite3-0,libcap2

# Every library the two binaries load must be in the rootfs, and they must run
# on its C library (the container's ld.so and libraries, on the host).
libdirs=
for so in $(ldd "$COFFERD" "$CLIENT" "$LIBCOFFER" 2>/dev/null | awk '$2 == "=>" { print $1 }' | sort -u); do
    [ "$so" = libcoffer.so.1 ] && continue
    f=$(ls "$ROOTFS"/usr/lib/*/"$so" "$ROOTFS"/usr/lib/"$so" 2>/dev/null | head -1)
    if [ -z "$f" ]; then
        case $so in
        libasan* | libubsan* | libtsan* | liblsan*)
            skip_all "a sanitizer build: the container has no $so (build without --enable-sanitizers)" ;;
        esac
        skip_all "the rootfs in $ROOTFS has no $so, which this cofferd or coffer needs (delete $ROOTFS to rebuild it)"
    fi
    case ":$libdirs:" in *":${f%/*}:"*) ;; *) libdirs=$libdirs${libdirs:+:}${f%/*} ;; esac
done
interp=$(ldd "$COFFERD" | awk '$1 ~ /^\// { print $1; exit }')
[ -n "$interp" ] && [ -x "$ROOTFS$interp" ] || skip_all "the rootfs has no dynamic loader $interp"
"$ROOTFS$interp" --library-path "$libdirs" "$COFFERD" --version >"$T/ver.out" 2>&1 ||
    skip_all "this cofferd does not run on the rootfs's libraries: $(head -1 "$T/ver.out")"
"$ROOTFS$interp" --library-path "$libdirs:${LIBCOFFER%/*}" "$CLIENT" --help >"$T/ver.out" 2>&1 ||
    grep -qi usage "$T/ver.out" || skip_all "this coffer does not run on the rootfs's libraries: $(head -1 "$T/ver.out")"

# ---- /usr/local: the build, as `make install` with the default prefix puts it ----
UL=$T/usrlocal
UL_PREFIX=/usr/local
mkdir -p "$UL/sbin" "$UL/bin" "$UL/lib"
cp "$COFFERD" "$UL/sbin/cofferd"
cp "$CLIENT" "$UL/bin/coffer"
cp -L "$LIBCOFFER" "$UL/lib/libcoffer.so.1"
chmod -R a+rX,go-w "$UL"

# ---- /etc: a scratch copy, with the units, sysusers.d, tmpfiles.d, policy ----
E=$T/etc
cp -a "$ROOTFS/etc" "$E"
rm -f "$E/.updated"
! grep -q '^coffer:' "$E/passwd" || skip_all "the rootfs already has a user coffer"
U=$E/systemd/system
mkdir -p "$U/sockets.target.wants" "$U/multi-user.target.wants" "$E/sysusers.d" "$E/tmpfiles.d"
sed -e 's|@sbindir[@]|/usr/local/sbin|g' "$DIST/systemd/cofferd.service.in" >"$U/cofferd.service"
cp "$DIST/systemd/cofferd.socket" "$DIST/systemd/cofferd-creds.socket" "$DIST/systemd/run-coffer-sessions.mount" \
    "$E2E/trainer@.service" \
    "$E2E/other@.service" "$E2E/coffer-e2e-driver.service" "$U/"
# `systemctl enable cofferd.socket cofferd-creds.socket`: the sockets only
ln -s ../cofferd.socket "$U/sockets.target.wants/cofferd.socket"
ln -s ../cofferd-creds.socket "$U/sockets.target.wants/cofferd-creds.socket"
ln -s ../coffer-e2e-driver.service "$U/multi-user.target.wants/coffer-e2e-driver.service"
cp "$DIST/sysusers.d/coffer.conf" "$E/sysusers.d/coffer.conf"
cp "$DIST/tmpfiles.d/coffer.conf" "$E/tmpfiles.d/coffer.conf"
mkdir -p "$E/coffer/policy.d"
cp "$POLICY_DIR/00-default.policy" "$E/coffer/policy.d/"
echo 'allow read secret:hf/*   unit:trainer@*.service' >"$E/coffer/policy.d/10-units.policy"
printf '# credential      secret\nhf-token          secret:hf/token\n' >"$E/coffer/creds.map"
chmod 0755 "$E/coffer" "$E/coffer/policy.d"

# A build whose compiled-in directories are not the unit's gets a
# cofferd.conf where it looks for one, naming the unit's directories.
CONF=
case $localstatedir in
/var) ;;
*) CONF="${CONF}state_dir = /var/lib/coffer\n" ;;
esac
case $sysconfdir in
/etc) ;;
*) CONF="${CONF}policy_dir = /etc/coffer/policy.d\ncreds_map = /etc/coffer/creds.map\nlogin_map = /etc/coffer/login.map\n" ;;
esac
if [ -n "$CONF" ]; then
    case $sysconfdir in
    /etc) CONF_DIR=$E/coffer ;;
    "$UL_PREFIX"/etc) CONF_DIR=$UL/etc/coffer ;;
    *) skip_all "this build reads $sysconfdir/coffer/cofferd.conf, which the test cannot place in the container; configure with --sysconfdir=/etc --localstatedir=/var" ;;
    esac
    mkdir -p "$CONF_DIR"
    printf "# t-nspawn-unit.sh: this build's defaults are not the unit's directories\n$CONF" >"$CONF_DIR/cofferd.conf"
    chmod 0755 "$CONF_DIR"
    chmod 0644 "$CONF_DIR/cofferd.conf"
    chmod -R a+rX,go-w "$UL"
    note "this build (prefix $prefix) defaults to $localstatedir/lib/coffer and $sysconfdir/coffer, not the unit's"
    note "StateDirectory= (/var/lib/coffer) and tmpfiles.d's /etc/coffer: $sysconfdir/coffer/cofferd.conf in the container says"
    printf "$CONF" | sed 's/^/#   /'
fi

chmod 0644 "$E/coffer/policy.d/"* "$E/coffer/creds.map" "$U"/*.service "$U"/*.socket \
    "$E/sysusers.d/coffer.conf" "$E/tmpfiles.d/coffer.conf"

# ---- input, output, journal ----
mkdir -p "$T/in" "$T/out" "$T/journal"
chmod 0755 "$T/in" "$T/out"
# a fresh value; the test compares bytes and never prints it
head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$T/in/value"
chmod 0644 "$T/in/value"
cp "$T/in/value" "$T/value"

# ---- boot ----
# nspawn's own cgroup, named like machined's machine-NAME.scope (see
# t-nspawn.sh); made last, as skip_all does not clean up.
mkdir -p "$CG/$SLICE/$SCOPE" || { rm_cgroup_tree "$CG/$SLICE"; skip_all "cannot create a cgroup under $CG"; }
# /etc is the scratch copy.
nspawn_boot --private-network --capability=CAP_IPC_LOCK \
    --bind="$E:/etc" \
    --bind-ro="$UL:/usr/local" \
    --bind-ro="$E2E:/run/coffer-e2e" \
    --bind-ro="$T/in:/run/coffer-in" \
    --bind="$T/out:/run/coffer-out" \
    --bind="$T/journal:/var/log/journal"
note "the container ran for $nspawn_secs s (nspawn exit $nspawn_rc)"

O=$T/out
# The container's persistent journal, read here after it stopped: complete
# even when the driver did not get to the end.
container_journal() { journalctl -D "$T/journal" --no-pager -o short-monotonic "$@" 2>&1; }
container_journal -u cofferd.service -u cofferd.socket -u cofferd-creds.socket >"$T/cofferd.journal"
container_journal >"$T/journal.all"
# prop FILE UNIT PROPERTY: from a `systemctl show` of several units (blocks split by blank lines)
prop() {
    awk -v RS= -v id="Id=$2" -v p="$3=" '{ n = split($0, l, "\n"); f = 0; v = ""
        for (i = 1; i <= n; i++) { if (l[i] == id) f = 1; if (index(l[i], p) == 1) v = substr(l[i], length(p) + 1) }
        if (f) print v }' "$O/$1" 2>/dev/null
}
states() {   # states FILE UNIT PROPERTY...: "P=V P=V ..."
    local f=$1 u=$2 p out=; shift 2
    for p in "$@"; do out="$out${out:+ }$p=$(prop "$f" "$u" "$p")"; done
    echo "$out"
}
rc_of() { cat "$O/$1.rc" 2>/dev/null || echo none; }
stat_of() { awk -v n="$2" '$1 == n { $1 = ""; sub(/^ /, ""); print }' "$O/$1" 2>/dev/null; }
status_field() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^[ \t]+/, ""); print }' "$O/cofferd.status" 2>/dev/null; }
diagnose() {   # on failure: what nspawn and the container said (never a value)
    echo "# --- nspawn:"; tail -20 "$T/nspawn.log" | sed 's/^/#   /'
    echo "# --- driver stderr:"; for f in "$O"/*.err; do [ -s "$f" ] && sed "s|^|#   ${f##*/}: |" "$f"; done
    echo "# --- failed units:"; sed 's/^/#   /' "$O/failed" 2>/dev/null
    echo "# --- container journal, cofferd's units:"; tail -60 "$T/cofferd.journal" | sed 's/^/#   /'
}

is "the container powered itself off after the driver (nspawn exit 0, no timeout)" "$nspawn_rc" 0
ok "...and the driver got to the end" test -e "$O/done"

# ---- boot: sysusers.d, tmpfiles.d, the sockets ----
is "systemd-sysusers.service ran at boot and succeeded" \
    "$(states boot.show systemd-sysusers.service ConditionResult ActiveState Result)" \
    "ConditionResult=yes ActiveState=active Result=success"
ok "...it made the system user coffer (no login shell) from sysusers.d/coffer.conf" \
    grep -qE '^coffer:x:[0-9]+:[0-9]+:[^:]*:/var/lib/coffer:(/usr)?/s?bin/(nologin|false)$' "$O/passwd"
ok "...and the groups coffer and coffer-admin" \
    sh -c 'grep -q "^coffer:" "$1" && grep -q "^coffer-admin:" "$1"' _ "$O/group"
CUID=$(awk -F: '$1 == "coffer" { print $3 }' "$O/passwd" 2>/dev/null)
CGID=$(awk -F: '$1 == "coffer" { print $4 }' "$O/passwd" 2>/dev/null)
is "systemd-tmpfiles-setup.service succeeded" \
    "$(states boot.show systemd-tmpfiles-setup.service ActiveState Result)" "ActiveState=active Result=success"
is "...it made /run/coffer 0755 coffer:coffer" "$(stat_of boot.stat /run/coffer)" "755 coffer:coffer directory"
is "...and /var/lib/coffer 0700 coffer:coffer" "$(stat_of boot.stat /var/lib/coffer)" "700 coffer:coffer directory"
is "...and left /etc/coffer/policy.d 0755 root" "$(stat_of boot.stat /etc/coffer/policy.d)" "755 root:root directory"
for s in cofferd.socket cofferd-creds.socket; do
    is "$s is listening after boot" "$(states boot.show "$s" ActiveState SubState)" "ActiveState=active SubState=listening"
done
is "the API socket is 0666 root" "$(stat_of boot.stat /run/coffer/coffer.sock)" "666 root:root socket"
is "the credential socket is 0600 root" "$(stat_of boot.stat /run/coffer/creds.sock)" "600 root:root socket"
is "cofferd.service was not started at boot (only its sockets are enabled)" \
    "$(states boot.show cofferd.service ActiveState)" "ActiveState=inactive"

# ---- the first connection: socket activation ----
is "coffer status through /run/coffer/coffer.sock works (and starts the service)" "$(rc_of status1)" 0
is "cofferd.service is active (running) after it" \
    "$(states activated.show cofferd.service ActiveState SubState NRestarts)" \
    "ActiveState=active SubState=running NRestarts=0"
ok "...triggered by its two sockets" \
    sh -c 'v=" $1 "; case $v in *" cofferd.socket "*) ;; *) exit 1;; esac; case $v in *" cofferd-creds.socket "*) ;; *) exit 1;; esac' \
    _ "$(prop activated.show cofferd.service TriggeredBy)"
is "systemd passed it two fds (LISTEN_FDS=2)" "$(sed -n 's/^LISTEN_FDS=//p' "$O/cofferd.listen" 2>/dev/null)" 2
is "...the one named coffer is /run/coffer/coffer.sock" \
    "$(awk '$1 == "coffer" { print $3 }' "$O/cofferd.fds" 2>/dev/null)" /run/coffer/coffer.sock
is "...the one named creds is /run/coffer/creds.sock" \
    "$(awk '$1 == "creds" { print $3 }' "$O/cofferd.fds" 2>/dev/null)" /run/coffer/creds.sock

# ---- the daemon process, as the kernel sees it ----
ok "the coffer user has a uid" test -n "$CUID"
is "cofferd runs as User=coffer (real, effective, saved, fs uid)" "$(status_field Uid | tr -s ' \t' ' ')" \
    "$CUID $CUID $CUID $CUID"
is "...and Group=coffer" "$(status_field Gid | tr -s ' \t' ' ')" "$CGID $CGID $CGID $CGID"
is "its effective capabilities are CAP_CHOWN|CAP_IPC_LOCK|CAP_SYS_PTRACE" "$(status_field CapEff)" 0000000000084001
is "...its permitted ones too" "$(status_field CapPrm)" 0000000000084001
is "...and its bounding set (CapabilityBoundingSet=)" "$(status_field CapBnd)" 0000000000084001
is "it runs under a seccomp filter (Seccomp: 2)" "$(status_field Seccomp)" 2
is "...with no new privileges (NoNewPrivs: 1)" "$(status_field NoNewPrivs)" 1

# ---- the store, through the socket, inside the sandbox ----
is "coffer operator init --keyfile, as root" "$(rc_of init)" 0
is "coffer put hf/token, as root (the store in /var/lib/coffer is writable)" "$(rc_of put)" 0
ok "coffer status: initialized and unsealed" \
    sh -c 'grep -qE "^Initialized: +yes" "$1" && grep -qE "^Sealed: +no" "$1"' _ "$O/status2.out"
is "/var/lib/coffer is 0700 coffer:coffer" "$(stat_of runtime.stat /var/lib/coffer)" "700 coffer:coffer directory"
is "/run/coffer is 0755 coffer:coffer (RuntimeDirectory=)" "$(stat_of runtime.stat /run/coffer)" "755 coffer:coffer directory"
ok "the audit log /var/lib/coffer/audit.log was written, by coffer" \
    sh -c 'grep -qE "^/var/lib/coffer/audit.log [0-7]+ coffer:coffer regular" "$1" && test -s "$2"' _ \
    "$O/runtime.stat" "$O/audit.log"
is "the session directory root /run/coffer/sessions is 0711 coffer:coffer" \
    "$(stat_of runtime.stat /run/coffer/sessions)" "711 coffer:coffer directory"
is "run-coffer-sessions.mount was pulled in by the service and is mounted" \
    "$(states sessions.show run-coffer-sessions.mount ActiveState SubState)" "ActiveState=active SubState=mounted"
ok "the session directories are a tmpfs of their own, nosuid, nodev, noexec" \
    grep -qE '^tmpfs +rw,nosuid,nodev,noexec,.*mode=711' "$O/sessions.mount"
own_fs() {
    local s r
    s=$(stat_of runtime.dev /run/coffer/sessions) r=$(stat_of runtime.dev /run/coffer/revoked.json)
    [ -n "$s" ] && [ -n "$r" ] && [ "$s" != "$r" ]
}
ok "...not the file system of revoked.json (users cannot fill that)" own_fs
is "/run/coffer/jwks.json is 0644" "$(stat_of runtime.stat /run/coffer/jwks.json | awk '{ print $1 }')" 644
is "...and the daemon's" "$(stat_of runtime.stat /run/coffer/jwks.json | awk '{ print $2 }')" coffer:coffer

# ---- LoadCredential= from the socket unit ----
is "trainer@1.service started and succeeded" "$(rc_of trainer.start) $(states units.show trainer@1.service Result)" \
    "0 Result=success"
ok "trainer@1.service found the secret in \$CREDENTIALS_DIRECTORY/hf-token, byte for byte" \
    cmp -s "$T/value" "$O/trainer@1.service.out"
ok "...audited as a creds-load allow for the unit" \
    sh -c "grep '\"op\":\"creds-load\"' '$O/audit.log' | grep '\"decision\":\"allow\"' | grep -q 'unit=trainer@1.service credential=hf-token'"
if [ -s "$O/other@1.service.out" ]; then
    other_got="$(stat -c %s "$O/other@1.service.out") bytes"
elif [ -f "$O/other@1.service.out" ]; then
    other_got="an EMPTY credential file; the unit ran: $(states units.show other@1.service ActiveState Result)"
else
    other_got="no credential: the unit did not run its command: $(states units.show other@1.service ActiveState Result)"
fi
note "systemd gave other@1.service: $other_got"
ok "other@1.service, not allowed by the policy, received nothing (an empty credential)" \
    sh -c "test -f '$O/other@1.service.out' && ! test -s '$O/other@1.service.out'"
ok "...the refusal is audited as a creds-load deny" \
    sh -c "grep '\"op\":\"creds-load\"' '$O/audit.log' | grep '\"decision\":\"deny\"' | grep -q 'unit=other@1.service credential=hf-token: policy does not allow'"
ok "...and logged loudly (container journal)" grep -q 'REFUSED a systemd credential (unit=other@1.service credential=hf-token' \
    "$T/cofferd.journal"

ok_out "coffer audit verify, as root" '^audit log intact' cat "$O/audit.out"
is "...exits 0" "$(rc_of audit)" 0

# ---- stop ----
is "systemctl stop cofferd.service exits 0" "$(rc_of stop)" 0
is "cofferd.service stopped cleanly (exit status 0, Result=success)" \
    "$(states stopped.show cofferd.service ActiveState Result ExecMainCode ExecMainStatus)" \
    "ActiveState=inactive Result=success ExecMainCode=1 ExecMainStatus=0"
for s in cofferd.socket cofferd-creds.socket; do
    is "$s still listens after the service stopped" "$(states stopped.show "$s" ActiveState SubState)" \
        "ActiveState=active SubState=listening"
done
ok "the sockets survive the stop (RuntimeDirectoryPreserve=yes)" \
    sh -c 'grep -q "^/run/coffer/coffer.sock 666 root:root socket" "$1" && grep -q "^/run/coffer/creds.sock 600 root:root socket" "$1"' \
    _ "$O/stopped.stat"

# ---- the journal ----
ok "the container journal has cofferd's own lines" grep -q 'cofferd.*listening on /run/coffer/coffer.sock' "$T/cofferd.journal"
# A refused system call fails with EPERM (SystemCallErrorNumber=), which the
# daemon reports as the error of what it was doing; a killing filter would show
# as SIGSYS; a path left read-only by ProtectSystem= as EROFS.
ok "...and no sign of a refused system call, a missing permission or a crash" \
    sh -c '! grep -E "Operation not permitted|Permission denied|Bad system call|SIGSYS|type=1326|status=31|Read-only file system|Input/output error|core-dump|Failed with result|Failed to start|code=(killed|dumped)" "$1" >&2' \
    _ "$T/cofferd.journal"
ok "...nor a warning that a published file shares the session directories' file system" \
    sh -c '! grep "is on the file system of the session directories" "$1" >&2' _ "$T/cofferd.journal"
ok "no failed units in the container" sh -c 'test -f "$1" && ! test -s "$1"' _ "$O/failed"
ok "no secret value in the container's journal" sh -c "test -s '$T/journal.all' && ! grep -qF -f '$T/value' '$T/journal.all'"
ok "no secret value in the audit log" sh -c "test -s '$O/audit.log' && ! grep -qF -f '$T/value' '$O/audit.log'"

[ "$TAP_FAILED" -eq 0 ] || diagnose
done_testing
