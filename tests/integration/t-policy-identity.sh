#!/bin/bash
# Policy terms that depend on who the kernel says is calling, each with a
# positive and a negative case, as real distinct users: session:login (an audit
# session set through /proc/self/loginuid, as pam_loginuid does), unit: (the
# caller's systemd unit from its cgroup), exe: (the real CLI binary vs a copy
# elsewhere), time: (windows around the current local time), uid:, and group:
# by supplementary and by primary membership as the kernel reported it.
# `coffer policy explain` with subject flags gives the same answers.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3

S=$$
U=cftiu$S U2=cftiv$S G=cftig$S
groupadd -r "$G" || { echo "Bail out! groupadd failed"; exit 1; }
CLEANUP_EXTRA="groupdel $G 2>/dev/null"
useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$U" &&
    CLEANUP_EXTRA="userdel $U 2>/dev/null; $CLEANUP_EXTRA"
useradd -r -M -N -g nogroup -G "$G" -s /usr/sbin/nologin "$U2" &&
    CLEANUP_EXTRA="userdel $U2 2>/dev/null; $CLEANUP_EXTRA"
id "$U" >/dev/null 2>&1 && id "$U2" >/dev/null 2>&1 || { echo "Bail out! useradd failed"; exit 1; }
UID_U=$(id -u "$U") GID_U=$(id -g "$U")
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }
AS_U="setpriv --reuid=$U --regid=$GID_U --init-groups"   # for sh -c, where functions are not seen

denied() {   # denied DESCRIPTION OBJECT COMMAND...: a refused read (exit 5) with the explain hint
    local d=$1 o=$2; shift 2
    fails_with "$d" 5 "permission denied: read on $o is not allowed; run \`coffer policy explain read $o\`" "$@"
}
jfield() { "$PY" -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else v)' "$1"; }
skipn() { local n=$1 r=$2; shift 2; for d in "$@"; do skip "$d" "$r"; done; }

# ---- a first policy, so that the daemon starts; the real one needs the CLI's exe ----
P=$T/policy.d
mkdir -m 0755 "$P"
printf 'allow read secret:uid/* uid:%s\n' "$UID_U" >"$P/10-id.policy"; chmod 0644 "$P/10-id.policy"
start_daemon --policy-dir "$P" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! init failed"; exit 1; }
for s in sess/a unit/a exe/a exe2/a time/on time/off time/wrap time/notnow uid/a grp/a; do
    printf '%s-value' "$s" | "$COFFER" put "$s" >/dev/null 2>&1 || { echo "Bail out! root could not put $s"; exit 1; }
done

# ---- probes: what this machine lets us set up ----
REALEXE=$(as "$U" "$COFFER" whoami --json 2>/dev/null | jfield exe)
note "the CLI's executable as the daemon sees it: $REALEXE"
case "$REALEXE" in
    /*[][?{}\\#,\ ]* | "" | null) EXE_OK= ;;
    /*) EXE_OK=1 ;;
esac
mkdir -m 0755 "$T/bin"
cp "$top_builddir/.libs/coffer" "$T/bin/coffer-copy" && chmod 0755 "$T/bin/coffer-copy"
BIN=$(realpath "$T/bin")
COPY=(env LD_LIBRARY_PATH="$top_builddir/.libs" "$BIN/coffer-copy")   # the copy, with the library it needs
COPYEXE=$(as "$U" "${COPY[@]}" whoami --json 2>/dev/null | jfield exe)
[ "$COPYEXE" = "$BIN/coffer-copy" ] || { note "the copy is seen as '$COPYEXE', not $BIN/coffer-copy"; EXE_OK=; }

# session: writing a uid to /proc/self/loginuid (as pam_loginuid does) starts an audit session;
# session:login means a coffer login session (as pam_coffer opens) is open for it.
export SESSIONTOOL U
WITH_SESS() { sh -c 'echo 1234 >/proc/self/loginuid && "$SESSIONTOOL" open "$U" >/dev/null && exec "$@"' _ "$@"; }
AUDIT_ONLY() { sh -c 'echo 1234 >/proc/self/loginuid && exec "$@"' _ "$@"; }
NO_SESS() { sh -c '[ "$(cat /proc/self/sessionid)" = 4294967295 ] || echo 4294967295 >/proc/self/loginuid; exec "$@"' _ "$@"; }
SESS_OK= SESS_WHY=
s_yes=$(AUDIT_ONLY $AS_U "$COFFER" whoami --json 2>/dev/null | jfield audit_session)
s_no=$(NO_SESS $AS_U "$COFFER" whoami --json 2>/dev/null)
if [ -z "$s_yes" ] || [ "$s_yes" = null ]; then
    SESS_WHY="writing /proc/self/loginuid gives no audit session here (got '$s_yes')"
elif [ "$(printf '%s' "$s_no" | jfield audit_session)" != null ] || [ -n "$(printf '%s' "$s_no" | jfield login_session | sed 's/^null$//')" ]; then
    SESS_WHY="cannot run a process outside a login session here (whoami: $s_no)"
else
    SESS_OK=1
fi
note "session probe: with loginuid audit_session=$s_yes; ${SESS_WHY:-usable}"

# unit: put a process into <cgroup root>/cftestS.slice/<unit>, in every hierarchy systemd might read
SLICE=cftest$S.slice
CG_ROOTS="$(findmnt -rn -t cgroup2 -o TARGET) $(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '/name=systemd/ {print $1}')"
CG_ROOTS=$(echo $CG_ROOTS)
UNIT_OK= UNIT_WHY=
cg_cleanup() {
    local r u i
    for r in $CG_ROOTS; do
        for u in trainer@1.service other@1.service; do
            for i in 1 2 3 4 5 6 7 8 9 10; do
                [ -d "$r/$SLICE/$u" ] || break
                rmdir "$r/$SLICE/$u" 2>/dev/null && break
                sleep 0.1
            done
        done
        [ -d "$r/$SLICE" ] && rmdir "$r/$SLICE" 2>/dev/null
    done
}
if [ -z "$CG_ROOTS" ]; then
    UNIT_WHY="no cgroup file system mounted"
else
    for r in $CG_ROOTS; do
        mkdir -p "$r/$SLICE/trainer@1.service" "$r/$SLICE/other@1.service" 2>/dev/null || UNIT_WHY="cannot create cgroups under $r"
    done
    CLEANUP_EXTRA="cg_cleanup; $CLEANUP_EXTRA"
fi
export CG_ROOTS SLICE
IN_UNIT() {   # IN_UNIT UNIT COMMAND...: run COMMAND in that unit's cgroup
    sh -c 'u=$1; shift; for r in $CG_ROOTS; do echo $$ >"$r/$SLICE/$u/cgroup.procs" || exit 99; done; exec "$@"' _ "$@"
}
if [ -z "$UNIT_WHY" ]; then
    got=$(IN_UNIT trainer@1.service $AS_U "$COFFER" whoami --json 2>/dev/null | jfield unit)
    [ "$got" = trainer@1.service ] || UNIT_WHY="the daemon sees a process in $SLICE/trainer@1.service as unit '$got'"
    [ -z "$UNIT_WHY" ] && UNIT_OK=1
fi
note "unit probe (cgroup roots: $CG_ROOTS): ${UNIT_WHY:-usable}"

# time: windows around the daemon's local time, hours wide
now=$(( 10#$(date +%H) * 60 + 10#$(date +%M) ))
hm() { local m=$(( ($1 % 1440 + 1440) % 1440 )); printf '%02d:%02d' $((m / 60)) $((m % 60)); }
T_ON="$(hm $((now - 120)))-$(hm $((now + 120)))"       # now is inside
T_OFF="$(hm $((now + 180)))-$(hm $((now + 300)))"      # now is outside
T_WRAP="$(hm $((now + 60)))-$(hm $((now + 30)))"       # all day but a slot ahead: wraps midnight
T_NOTNOW="$(hm $((now + 120)))-$(hm $((now - 120)))"   # all day but around now: wraps midnight
note "local time $(hm $now): on $T_ON, off $T_OFF, wrap $T_WRAP, not-now $T_NOTNOW"

# ---- the policy ----
{
    echo "# identity terms"
    echo "allow read secret:sess/*    user:$U session:login"
    echo "allow read secret:unit/*    user:$U unit:trainer@*.service"
    [ -n "$EXE_OK" ] && echo "allow read secret:exe/*     user:$U exe:$REALEXE"
    echo "allow read secret:exe2/*    user:$U exe:$BIN/coffer-*"
    echo "allow read secret:time/on   user:$U time:$T_ON"
    echo "allow read secret:time/off  user:$U time:$T_OFF"
    echo "allow read secret:time/wrap user:$U time:$T_WRAP"
    echo "allow read secret:time/notnow user:$U time:$T_NOTNOW"
    echo "allow read secret:uid/*     uid:$UID_U"
    echo "allow read secret:grp/*     group:$G"
} >"$P/10-id.policy"
chmod 0644 "$P/10-id.policy"
ok "policy check accepts the identity policy" "$COFFER" policy check "$P"
ok_out "policy reload loads it" '^policy reloaded: ' "$COFFER" policy reload
L() { grep -n -- "$1" "$P/10-id.policy" | head -1 | cut -d: -f1; }

# ---- session:login ----
if [ -n "$SESS_OK" ]; then
    ok_out "session: inside a coffer login session (loginuid set, session opened) the read is allowed" '^sess/a-value$' \
        WITH_SESS $AS_U "$COFFER" get sess/a
    denied "session: outside any login session the read is denied" secret:sess/a NO_SESS $AS_U "$COFFER" get sess/a
    denied "session: an audit session with no coffer session open is not a login session" secret:sess/a \
        AUDIT_ONLY $AS_U "$COFFER" get sess/a
    exits_out "session: explain for self inside a session names the rule" 0 \
        "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:sess):" WITH_SESS $AS_U "$COFFER" policy explain read secret:sess/a
else
    skipn 4 "$SESS_WHY" "session: inside an audit session the read is allowed" \
        "session: outside any login session the read is denied" "session: an audit session with no coffer session" \
        "session: explain for self inside a session"
fi
exits_out "session: explain --user --session allows" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:sess):" \
    "$COFFER" policy explain read secret:sess/a --user "$U" --session
exits_out "session: explain --user without --session: no rule allows this" 5 '^deny: no rule allows this' \
    "$COFFER" policy explain read secret:sess/a --user "$U"

# ---- unit: ----
if [ -n "$UNIT_OK" ]; then
    ok_out "unit: in trainer@1.service the read is allowed" '^unit/a-value$' \
        IN_UNIT trainer@1.service $AS_U "$COFFER" get unit/a
    denied "unit: in other@1.service the read is denied" secret:unit/a IN_UNIT other@1.service $AS_U "$COFFER" get unit/a
    denied "unit: outside any unit the read is denied" secret:unit/a as "$U" "$COFFER" get unit/a
else
    skipn 3 "$UNIT_WHY" "unit: in trainer@1.service the read is allowed" "unit: in other@1.service the read is denied" \
        "unit: outside any unit the read is denied"
fi
exits_out "unit: explain --unit trainer@7.service allows" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:unit):" \
    "$COFFER" policy explain read secret:unit/a --user "$U" --unit trainer@7.service
exits_out "unit: explain --unit trainer.service (no @): no rule allows this" 5 '^deny: no rule allows this' \
    "$COFFER" policy explain read secret:unit/a --user "$U" --unit trainer.service

# ---- exe: ----
if [ -n "$EXE_OK" ]; then
    ok_out "exe: the CLI at its real path reads exe/a" '^exe/a-value$' as "$U" "$COFFER" get exe/a
    denied "exe: a copy of the CLI elsewhere may not read exe/a" secret:exe/a as "$U" "${COPY[@]}" get exe/a
    ok_out "exe: the copy matches exe:$BIN/coffer-* and reads exe2/a" '^exe2/a-value$' as "$U" "${COPY[@]}" get exe2/a
    denied "exe: the real CLI does not match $BIN/coffer-*" secret:exe2/a as "$U" "$COFFER" get exe2/a
else
    skipn 4 "the CLI's exe path ($REALEXE) or the copy's ($COPYEXE) is unusable in a pattern" \
        "exe: real path allowed" "exe: copy denied" "exe: copy allowed by glob" "exe: real CLI denied by glob"
fi
exits_out "exe: explain --exe $BIN/coffer-copy allows exe2/a" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:exe2):" \
    "$COFFER" policy explain read secret:exe2/a --user "$U" --exe "$BIN/coffer-copy"
exits_out "exe: explain --exe /usr/bin/true: no rule allows exe2/a" 5 '^deny: no rule allows this' \
    "$COFFER" policy explain read secret:exe2/a --user "$U" --exe /usr/bin/true

# ---- time: ----
ok_out "time: inside $T_ON the read is allowed" '^time/on-value$' as "$U" "$COFFER" get time/on
denied "time: outside $T_OFF the read is denied" secret:time/off as "$U" "$COFFER" get time/off
ok_out "time: inside the wrapping window $T_WRAP the read is allowed" '^time/wrap-value$' as "$U" "$COFFER" get time/wrap
denied "time: outside the wrapping window $T_NOTNOW the read is denied" secret:time/notnow \
    as "$U" "$COFFER" get time/notnow
exits_out "time: explain names the time rule" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:time/on):" \
    as "$U" "$COFFER" policy explain read secret:time/on

# ---- uid: ----
ok_out "uid: uid $UID_U reads uid/a" '^uid/a-value$' as "$U" "$COFFER" get uid/a
denied "uid: another uid may not" secret:uid/a as "$U2" "$COFFER" get uid/a
exits_out "uid: explain --uid allows" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:uid):" \
    "$COFFER" policy explain read secret:uid/a --uid "$UID_U"

# ---- group: ----
ok_out "group: a supplementary member reads grp/a" '^grp/a-value$' as "$U2" "$COFFER" get grp/a
denied "group: a non-member may not" secret:grp/a as "$U" "$COFFER" get grp/a
ok_out "group: the group as primary group is enough" '^grp/a-value$' \
    setpriv --reuid="$U" --regid="$G" --clear-groups "$COFFER" get grp/a
denied "group: what counts is the kernel's view: the member with its groups cleared may not" secret:grp/a \
    setpriv --reuid="$U2" --regid=nogroup --clear-groups "$COFFER" get grp/a
exits_out "group: explain --group allows" 0 "^allow: allowed by ([^ ]*/)?10-id\\.policy:$(L secret:grp):" \
    "$COFFER" policy explain read secret:grp/a --user "$U2" --group "$G"

done_testing
