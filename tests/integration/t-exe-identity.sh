#!/bin/bash
# exe: rules name a file, not a path string. Inside its own user and mount
# namespace (unshare -Urm) a user can bind-mount their own program over a
# root-owned path that a rule names and run it: /proc/PID/exe then shows that
# path. cofferd must not grant such a process, must say why, and must record
# the file that really ran. A caller in another user namespace
# matches no exe: rule unless allow_foreign_namespaces = yes, and even then
# only when the path, looked up by cofferd, leads to the file it runs. The
# re-check compares the file, and "the host's" namespaces are PID 1's, also
# for a daemon with mounts of its own.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3

U=cftxe$$
useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$U" && CLEANUP_EXTRA="userdel $U 2>/dev/null"
id "$U" >/dev/null 2>&1 || { echo "Bail out! useradd failed"; exit 1; }
AS_U=(setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups)
LIBS="$top_builddir/.libs"
jfield() { "$PY" -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else v)' "$1"; }
denied() {   # denied DESCRIPTION OBJECT HINT COMMAND...: a refused read (exit 5) that says why
    local d=$1 o=$2 h=$3; shift 3
    fails_with "$d" 5 "permission denied: read on $o is not allowed; run \`coffer policy explain read $o\` to see why.*$h" "$@"
}

# The programs the admin trusts, root-owned in a root-owned directory: the
# CLI itself, and a stand-in for any other program (true).
SYS=$(realpath "$T")/sys
mkdir -m 0755 "$SYS"
cp "$LIBS/coffer" "$SYS/coffer" && cp /usr/bin/true "$SYS/trusted" && chmod 0755 "$SYS/coffer" "$SYS/trusted" ||
    { echo "Bail out! cannot copy the programs"; exit 1; }
# The user's own code: a copy of the CLI in a directory of theirs.
OWN=$(realpath "$T")/own
mkdir -m 0755 "$OWN" && cp "$LIBS/coffer" "$OWN/mine" && chown -R "$U" "$OWN" || { echo "Bail out! no user dir"; exit 1; }
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
    echo "allow read secret:cli/*   user:$U exe:$SYS/coffer"
    echo "allow read secret:true/*  user:$U exe:$SYS/trusted"
    echo "allow read secret:glob/*  user:$U exe:$SYS/tru*"
} >"$POLICY_DIR/10-exe.policy"
chmod 0644 "$POLICY_DIR/10-exe.policy"
start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
for s in cli/a true/a glob/a; do
    printf '%s-value' "$s" | "$COFFER" put "$s" >/dev/null 2>&1 || { echo "Bail out! root could not put $s"; exit 1; }
done

# The attack: in its own namespaces the user mounts their copy over the
# trusted program and runs it under that name.
# There root's socket is owned by the overflow uid: the CLI is told to
# expect that (the user's own code would not check at all).
NS_ENV=(env COFFER_DAEMON_USER="$(id -un 65534)")
IMPOSTOR() {
    "${AS_U[@]}" "${NS_ENV[@]}" unshare -Urm sh -c 't=$2; mount --bind "$1" "$t" && shift 2 && exec "$t" "$@"' _ \
        "$OWN/mine" "$SYS/trusted" "$@"
}
# The trusted CLI itself, run in a user namespace (and a mount namespace).
IN_USERNS() { "${AS_U[@]}" "${NS_ENV[@]}" unshare -Ur "$SYS/coffer" "$@"; }
IN_MOUNTNS() { "${AS_U[@]}" "${NS_ENV[@]}" unshare -Urm "$SYS/coffer" "$@"; }
if ! "${AS_U[@]}" unshare -Urm sh -c 'mount --bind "$1" "$2" && cmp -s "$1" "$2"' _ "$OWN/mine" "$SYS/trusted" 2>/dev/null; then
    note "an unprivileged user cannot unshare -Urm and bind-mount here"
    skip_all "needs unprivileged user and mount namespaces"
fi
MINE_ID=$(stat -c '%Hd:%Ld:%i' "$OWN/mine")
SYS_ID=$(stat -c '%Hd:%Ld:%i' "$SYS/coffer")

# ---- the normal case: the trusted program in the host's namespaces ----
ok_out "the trusted CLI in the host's namespaces reads under its exe: rule" '^cli/a-value$' \
    "${AS_U[@]}" "$SYS/coffer" get cli/a
w=$("${AS_U[@]}" "$SYS/coffer" whoami --json 2>/dev/null)
is "whoami shows the running file's device and inode" "$(printf '%s' "$w" | jfield exe_file)" "$SYS_ID"
is "whoami: the path names that file" "$(printf '%s' "$w" | jfield exe_verified)" True
is "whoami: in the host's namespaces" "$(printf '%s' "$w" | jfield foreign_namespace)" False
denied "another program (the user's copy) is not the one the rule names" secret:cli/a '' \
    "${AS_U[@]}" "$OWN/mine" get cli/a
# A mount namespace root made (a service's PrivateTmp=, ProtectSystem=) is
# not foreign: no user can make one without a user namespace of their own.
ok_out "in a mount namespace root made, the trusted CLI still reads under its exe: rule" '^cli/a-value$' \
    unshare -m --propagation slave "${AS_U[@]}" "$SYS/coffer" get cli/a
w=$(unshare -m --propagation slave "${AS_U[@]}" "$SYS/coffer" whoami --json 2>/dev/null)
is "whoami there: not a foreign namespace" "$(printf '%s' "$w" | jfield foreign_namespace)" False

# ---- the attack ----
denied "a copy bind-mounted over a path an exe: rule names is refused" secret:true/a 'another user namespace' \
    IMPOSTOR get true/a
denied "... also under an exe: glob" secret:glob/a 'another user namespace' IMPOSTOR get glob/a
w=$(IMPOSTOR whoami --json 2>/dev/null)
is "whoami of the impostor shows the path it claims" "$(printf '%s' "$w" | jfield exe)" "$SYS/trusted"
is "... the file it really runs" "$(printf '%s' "$w" | jfield exe_file)" "$MINE_ID"
is "... that the path does not name that file" "$(printf '%s' "$w" | jfield exe_verified)" False
is "... and a foreign namespace" "$(printf '%s' "$w" | jfield foreign_namespace)" True
ok_out "whoami's text says so" '^namespace: +foreign' IMPOSTOR whoami
rec=$(grep '"op":"get","object":"secret:true/a"' "$T/audit.log" | tail -1)
check "the audit record of the refused read names the file that ran" \
    grep -qF "\"exe\":\"$SYS/trusted\",\"exe_file\":\"$MINE_ID\",\"exe_unverified\":true,\"foreign_ns\":true" \
    <<<"$rec"
check "... and records the denial" grep -qF '"decision":"deny"' <<<"$rec"

# ---- the trusted program itself, in another namespace ----
denied "the trusted CLI in a user namespace matches no exe: rule by default" secret:cli/a 'another user namespace' \
    IN_USERNS get cli/a
denied "... nor in a mount namespace" secret:cli/a 'another user namespace' IN_MOUNTNS get cli/a

# ---- the re-check: the same path, another file ----
# A process that connected as the trusted program, then made its own
# namespaces, mounted its copy over that path and exec'd it there (keeping
# the connection) runs another file under the same path.
cp /usr/bin/python3 "$SYS/py" && chmod 0755 "$SYS/py" && cp /usr/bin/python3 "$OWN/py" && chown "$U" "$OWN/py" ||
    { echo "Bail out! cannot copy python"; exit 1; }
cat >"$T/swap.py" <<'PYEOF'
import ctypes, os, socket, struct, sys

def get(s, name):
    b = name.encode()
    body = struct.pack(">BBI", 1, 2, len(b)) + b           # T_NAME, string
    s.sendall(struct.pack(">IHHII", 0x434f4652, 1, 17, 1, len(body)) + body)  # OP_GET
    def rd(n):
        buf = b""
        while len(buf) < n:
            c = s.recv(n - len(buf))
            if not c:
                raise SystemExit("eof")
            buf += c
        return buf
    op, n = struct.unpack(">IHHII", rd(16))[2::2]
    body, i, code = rd(n), 0, 0
    while i + 6 <= len(body):
        tag, typ, ln = struct.unpack(">BBI", body[i:i + 6])
        if tag == 8 and typ == 1:                          # T_ERR_CODE
            code = struct.unpack(">Q", body[i + 6:i + 14])[0]
        i += 6 + ln
    return "ok" if op != 0xffff else "errno=%d" % code

if sys.argv[1] == "connect":
    path, name, own, target = sys.argv[2:6]
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    print("before:", get(s, name), flush=True)
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000 | 0x00020000) != 0:          # CLONE_NEWUSER | CLONE_NEWNS
        raise SystemExit("unshare: errno %d" % ctypes.get_errno())
    for f, v in (("setgroups", "deny"), ("uid_map", "0 %d 1" % uid), ("gid_map", "0 %d 1" % gid)):
        with open("/proc/self/" + f, "w") as fh:
            fh.write(v)
    if own != "-" and libc.mount(own.encode(), target.encode(), None, 4096, None) != 0:  # MS_BIND
        raise SystemExit("mount: errno %d" % ctypes.get_errno())
    os.set_inheritable(s.fileno(), True)
    os.execv(target, [target, __file__, "after", str(s.fileno()), name])
else:
    s = socket.socket(fileno=int(sys.argv[2]))
    print("after:", get(s, sys.argv[3]), flush=True)
PYEOF
chmod 0644 "$T/swap.py"
echo "allow read secret:py/*    user:$U exe:$SYS/py" >>"$POLICY_DIR/10-exe.policy"
ok "policy reload adds the python rule" "$COFFER" policy reload
printf 'py-value' | "$COFFER" put py/a >/dev/null 2>&1 || { echo "Bail out! root could not put py/a"; exit 1; }
out=$("${AS_U[@]}" "$SYS/py" "$T/swap.py" connect "$COFFER_SOCKET" py/a "$OWN/py" "$SYS/py" 2>&1)
is "re-check: the file swapped under the same path after connecting is refused" "$out" "before: ok
after: errno=3"   # ESRCH: "changed its executable or unit since it connected"
out=$("${AS_U[@]}" "$SYS/py" "$T/swap.py" connect "$COFFER_SOCKET" py/a - "$SYS/py" 2>&1)
is "re-check: the same file exec'd again (in other namespaces) still reads" "$out" "before: ok
after: ok"

# ---- allow_foreign_namespaces = yes: the path must still lead to the running file ----
printf 'allow_foreign_namespaces = yes\n' >"$T/foreign.conf"
chmod 0644 "$T/foreign.conf"
stop_daemon
start_daemon --config "$T/foreign.conf" || { echo "Bail out! cofferd did not start with the opt-in"; exit 1; }
unseal_keyfile || { echo "Bail out! unseal failed"; exit 1; }
ok_out "allowed: the trusted CLI in a user namespace reads" '^cli/a-value$' IN_USERNS get cli/a
ok_out "allowed: ... and in a mount namespace" '^cli/a-value$' IN_MOUNTNS get cli/a
denied "allowed: the bind-mounted copy is still refused (the path names another file)" secret:true/a \
    'the file at its path, as cofferd sees it, is not the one it runs' IMPOSTOR get true/a
denied "allowed: ... also under a glob" secret:glob/a 'is not the one it runs' IMPOSTOR get glob/a
ok_out "the normal case is unchanged" '^cli/a-value$' "${AS_U[@]}" "$SYS/coffer" get cli/a

# ---- a daemon with mounts of its own (cofferd.service: PrivateMounts=) ----
# Callers are compared with PID 1's namespaces, not the daemon's: in a PID
# namespace of our own, PID 1 is the shell that starts the daemon in a mount
# namespace of its own and runs the callers in its own.
stop_daemon
export COFFERD T POLICY_DIR SYS OWN U NS_ENV_USER="$(id -un 65534)"
PM_SOCK=$T/pm.sock
export PM_SOCK
pm_run() {
    unshare --pid --fork --mount-proc sh -c '
        unshare -m "$COFFERD" --state-dir "$T/state" --socket "$PM_SOCK" --audit-log "$T/audit.log" \
            --policy-dir "$POLICY_DIR" >>"$T/cofferd.log" 2>&1 &
        i=0; while [ ! -S "$PM_SOCK" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
        as="setpriv --reuid=$U --regid=$(id -g "$U") --init-groups"
        COFFER_SOCKET=$PM_SOCK $as "$SYS/coffer" whoami --json
        COFFER_SOCKET=$PM_SOCK COFFER_DAEMON_USER=$NS_ENV_USER $as unshare -Urm sh -c \
            "mount --bind \"\$1\" \"\$2\" && exec \"\$2\" whoami --json" _ "$OWN/mine" "$SYS/trusted"
        kill $! 2>/dev/null; wait' 2>&1
}
if unshare --pid --fork --mount-proc true 2>/dev/null; then
    out=$(pm_run)
    host=$(printf '%s\n' "$out" | sed -n 1p) impostor=$(printf '%s\n' "$out" | sed -n 2p)
    is "private mounts: a caller in PID 1's namespaces is not foreign" \
        "$(printf '%s' "$host" | jfield foreign_namespace) $(printf '%s' "$host" | jfield exe_verified)" "False True"
    is "private mounts: the impostor still is, and unverified" \
        "$(printf '%s' "$impostor" | jfield foreign_namespace) $(printf '%s' "$impostor" | jfield exe_verified)" \
        "True False"
else
    skip "private mounts: a caller in PID 1's namespaces is not foreign" "cannot make a PID namespace"
    skip "private mounts: the impostor still is, and unverified" "cannot make a PID namespace"
fi

printf 'allow_foreign_namespaces = maybe\n' >"$T/bad.conf"
chmod 0644 "$T/bad.conf"
fails_with "allow_foreign_namespaces takes yes or no" 1 "invalid value for 'allow_foreign_namespaces'" \
    "$COFFERD" --config "$T/bad.conf" --state-dir "$T/state-bad" --socket "$T/bad.sock" --policy-dir "$POLICY_DIR"

done_testing
