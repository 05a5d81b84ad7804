#!/bin/bash
# Policy as code, as real distinct users and groups: the issue's example
# policy decides who reads, lists, writes and deletes which secret and who
# administers the store; deny beats allow; a refusal says what was refused and
# how to ask why, and never whether the secret exists; `coffer policy explain`
# for oneself and (admins) for others; `coffer policy check` and reload
# (`coffer policy reload`, SIGHUP) reject every kind of broken policy, saying
# where, and keep the old one in force; a daemon started with a broken policy
# denies everyone but its own uid; denials are audited with the rule.
. "$(dirname "$0")/lib.sh"

need_root
PY=/usr/bin/python3

# ---- users and groups (names prefixed cft, removed at exit) ----
S=$$
G_ML=cftml$S G_INT=cftint$S G_ADM=cftadm$S
ALICE=cftalice$S BOB=cftbob$S CAROL=cftcarol$S DAVE=cftdave$S EVE=cfteve$S
mkgroup() { groupadd -r "$1" && CLEANUP_EXTRA="groupdel $1 2>/dev/null; ${CLEANUP_EXTRA:-}"; }
mkuser() {   # mkuser NAME [useradd options]: primary group nogroup, no home
    local u=$1; shift
    useradd -r -M -N -g nogroup -s /usr/sbin/nologin "$@" "$u" &&
        CLEANUP_EXTRA="userdel $u 2>/dev/null; ${CLEANUP_EXTRA:-}"
}
{ mkgroup "$G_ML" && mkgroup "$G_INT" && mkgroup "$G_ADM" &&
    mkuser "$ALICE" -G "$G_ML" &&              # the ML team
    mkuser "$BOB" &&                           # named in the datasets rule, no groups
    mkuser "$CAROL" -G "$G_ML,$G_INT" &&       # an ML intern
    mkuser "$DAVE" -G "$G_ADM" &&              # an administrator, reads nothing
    mkuser "$EVE"; } || { echo "Bail out! could not create test users and groups"; exit 1; }
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }

# denied DESCRIPTION ACTION OBJECT COMMAND...: exit 5, names action and object, hints at explain
denied() {
    local d=$1 a=$2 o=$3; shift 3
    local qo=${o//\*/\\*}
    fails_with "$d" 5 "permission denied: $a on $qo is not allowed; run \`coffer policy explain $a $qo\` to see why" "$@"
}
# lines_are DESCRIPTION EXPECTED COMMAND...: exit 0 and stdout is exactly these lines (sorted)
lines_are() {
    local d=$1 want=$2; shift 2
    local got rc
    got=$("$@" 2>"$T/last.err"); rc=$?
    is "$d" "$rc:$(printf '%s\n' "$got" | sed '/^$/d' | sort | tr '\n' ' ')" \
        "0:$(printf '%s\n' $want | sed '/^$/d' | sort | tr '\n' ' ')"
}
prev() { cat "$T/last.out" "$T/last.err" >"$T/prev"; }   # keep the last command's output for a follow-up check
lineof() { grep -n -- "$1" "$2" | head -1 | cut -d: -f1; }   # lineof FIXED-ERE FILE
audit_last() {   # audit_last FIELD...: fields of the last audit record
    "$PY" - "$T/audit.log" "$@" <<'EOF'
import json, sys
rec = json.loads(open(sys.argv[1], "rb").read().splitlines()[-1])
print(" ".join(str(rec.get(k)) for k in sys.argv[2:]))
EOF
}

# ---- the policy: the issue's example, adapted ----
P=$T/policy.d
mkdir -m 0755 "$P"
cat >"$P/10-team.policy" <<EOF
# effect  actions      object               subjects and conditions (all must hold)
allow     read,list    secret:hf/*          group:$G_ML
allow     read,list    secret:datasets/*    user:$ALICE,$BOB
deny      read,list    secret:prod/**       group:$G_INT
allow     read,list    secret:prod/*        group:$G_ML
allow     write        secret:scratch/*     user:$ALICE
allow     delete       secret:scratch/*     user:$BOB
allow     admin        *                    group:$G_ADM
EOF
chmod 0644 "$P/10-team.policy"
TEAM=$P/10-team.policy
L_HF=$(lineof 'secret:hf/\*' "$TEAM") L_DS=$(lineof 'secret:datasets' "$TEAM")
L_DENY=$(lineof '^deny' "$TEAM") L_PROD=$(lineof 'secret:prod/\* ' "$TEAM")
cp -p "$TEAM" "$T/team.policy.orig"
restore_policy() { rm -rf "$P"; mkdir -m 0755 "$P"; cp -p "$T/team.policy.orig" "$TEAM"; }

ok_out "policy check accepts the team policy: 7 rules in 1 file" '^ok: 7 rules in 1 files?' \
    "$COFFER" policy check "$P"

start_daemon --policy-dir "$P" || { echo "Bail out! cofferd did not start"; exit 1; }
init_keyfile || { echo "Bail out! root (the daemon's uid) could not init"; exit 1; }
for s in hf/token hf/other datasets/imagenet prod/db prod/api other/x; do
    printf '%s-value' "$s" | "$COFFER" put "$s" >/dev/null 2>&1 || { echo "Bail out! root could not put $s"; exit 1; }
done
printf 'scratch-value' >"$T/scratch.val"; chmod 0644 "$T/scratch.val"

# ---- allowed reads print the value ----
ok_out "alice (ml) reads hf/token" '^hf/token-value$' as "$ALICE" "$COFFER" get hf/token
ok_out "alice (ml) reads prod/db" '^prod/db-value$' as "$ALICE" "$COFFER" get prod/db
ok_out "alice (named) reads datasets/imagenet" '^datasets/imagenet-value$' as "$ALICE" "$COFFER" get datasets/imagenet
ok_out "bob (named) reads datasets/imagenet" '^datasets/imagenet-value$' as "$BOB" "$COFFER" get datasets/imagenet
ok_out "carol (ml and interns) reads hf/token" '^hf/token-value$' as "$CAROL" "$COFFER" get hf/token
ok_out "versions is read: alice may list versions of hf/token" '^1 ' as "$ALICE" "$COFFER" versions hf/token
fails_with "an allowed reader learns a missing secret is missing (exit 6)" 6 'no such secret' \
    as "$ALICE" "$COFFER" get hf/missing

# ---- everything else is denied, with the explain hint ----
denied "bob (no group ml) may not read hf/token" read secret:hf/token as "$BOB" "$COFFER" get hf/token
denied "eve (no rule) may not read hf/token" read secret:hf/token as "$EVE" "$COFFER" get hf/token
denied "alice may not read other/x (no rule)" read secret:other/x as "$ALICE" "$COFFER" get other/x
denied "dave (admin) may not read secrets: admin is not read" read secret:hf/token as "$DAVE" "$COFFER" get hf/token
denied "versions is read: bob may not list versions of hf/token" read secret:hf/token as "$BOB" "$COFFER" versions hf/token
denied "a name one level too deep does not match hf/*" read secret:hf/a/b as "$ALICE" "$COFFER" get hf/a/b
ok_out "status is open to eve" '"initialized":true' as "$EVE" "$COFFER" status --json
ok_out "whoami is open to eve" "\"user\":\"$EVE\"" as "$EVE" "$COFFER" whoami --json

# ---- deny beats allow ----
denied "carol (ml and interns) may not read prod/db although ml may" read secret:prod/db \
    as "$CAROL" "$COFFER" get prod/db
exits_out "carol's explain names the deny rule, file:line" 5 \
    "^deny: denied by ([^ ]*/)?10-team\\.policy:$L_DENY: deny +read,list +secret:prod/\\*\\* +group:$G_INT" \
    as "$CAROL" "$COFFER" policy explain read secret:prod/db

# ---- ls shows only what the caller may list; never an error ----
lines_are "root lists everything" "datasets/imagenet hf/other hf/token other/x prod/api prod/db" "$COFFER" ls
lines_are "alice lists hf, datasets, prod, not other/x" "datasets/imagenet hf/other hf/token prod/api prod/db" \
    as "$ALICE" "$COFFER" ls
lines_are "bob lists only datasets" "datasets/imagenet" as "$BOB" "$COFFER" ls
lines_are "carol lists hf, not prod (deny list beats ml's allow)" "hf/other hf/token" as "$CAROL" "$COFFER" ls
lines_are "eve lists nothing, exit 0" "" as "$EVE" "$COFFER" ls
lines_are "alice: ls prod/ shows both" "prod/api prod/db" as "$ALICE" "$COFFER" ls prod/
lines_are "carol: ls prod/ is empty, not an error" "" as "$CAROL" "$COFFER" ls prod/
lines_are "eve: ls prod/ (existing) and ls nope/ (not) are both empty" "" as "$EVE" "$COFFER" ls nope/

# ---- write and delete ----
fails_with "alice may write scratch/a" 0 'stored scratch/a version 1' as "$ALICE" "$COFFER" put scratch/a --file "$T/scratch.val"
denied "bob may not write scratch/b" write secret:scratch/b as "$BOB" "$COFFER" put scratch/b --file "$T/scratch.val"
denied "alice may not overwrite hf/token (read is not write)" write secret:hf/token \
    as "$ALICE" "$COFFER" put hf/token --file "$T/scratch.val"
ok_out "hf/token is unchanged" '^hf/token-value$' "$COFFER" get hf/token
denied "bob may not read scratch/a (delete is not read)" read secret:scratch/a as "$BOB" "$COFFER" get scratch/a
denied "alice may not rm scratch/a (write is not delete)" delete secret:scratch/a as "$ALICE" "$COFFER" rm scratch/a
ok_out "scratch/a is still there" '^scratch-value$' "$COFFER" get scratch/a
ok "bob may rm scratch/a" as "$BOB" "$COFFER" rm scratch/a
fails_with "... and it is gone" 6 'version 1 is deleted' "$COFFER" get scratch/a
denied "alice may not undelete scratch/a" delete secret:scratch/a as "$ALICE" "$COFFER" undelete scratch/a --version 1
ok "bob may undelete scratch/a" as "$BOB" "$COFFER" undelete scratch/a --version 1
ok_out "... and it is back" '^scratch-value$' "$COFFER" get scratch/a
denied "alice may not destroy scratch/a" delete secret:scratch/a as "$ALICE" "$COFFER" destroy scratch/a --version 1
ok "bob may destroy scratch/a" as "$BOB" "$COFFER" destroy scratch/a --version 1
denied "eve may not rm hf/token" delete secret:hf/token as "$EVE" "$COFFER" rm hf/token

# ---- admin operations ----
denied "eve may not rotate" admin store:rotate as "$EVE" "$COFFER" operator rotate
denied "alice may not seal" admin store:seal as "$ALICE" "$COFFER" operator seal
denied "eve may not reload the policy" admin policy:reload as "$EVE" "$COFFER" policy reload
denied "eve may not verify the audit log" admin audit:verify as "$EVE" "$COFFER" audit verify
denied "eve may not init (admin is checked before 'already initialized')" admin store:init \
    as "$EVE" "$COFFER" operator init --shares 2 --threshold 2
ok "dave (admin group) may rotate" as "$DAVE" "$COFFER" operator rotate
ok_out "dave may reload the policy: 7 rules" '^policy reloaded: 7 rules' as "$DAVE" "$COFFER" policy reload
ok "dave may verify the audit log" as "$DAVE" "$COFFER" audit verify
ok "dave may seal" as "$DAVE" "$COFFER" operator seal
ok_out "... and the store is sealed" '"sealed":true' "$COFFER" status --json
ok "root (daemon uid) unseals" unseal_keyfile

# ---- policy explain ----
exits_out "explain for self: alice's read of hf/token is allowed by file:line and rule" 0 \
    "^allow: allowed by ([^ ]*/)?10-team\\.policy:$L_HF: allow +read,list +secret:hf/\\* +group:$G_ML" \
    as "$ALICE" "$COFFER" policy explain read secret:hf/token
exits_out "explain for self: eve's read of hf/token: no rule allows this (exit 5)" 5 '^deny: no rule allows this' \
    as "$EVE" "$COFFER" policy explain read secret:hf/token
exits_out "explain for self: root is allowed by the builtin daemon-uid rule" 0 '^allow: .*builtin:daemon-uid' \
    "$COFFER" policy explain admin store:seal
exits_out "explain for others (root): bob may read datasets/x, by file:line" 0 \
    "^allow: allowed by ([^ ]*/)?10-team\\.policy:$L_DS: " \
    "$COFFER" policy explain read secret:datasets/x --user "$BOB"
exits_out "explain for others (root): carol with ml+interns is denied prod/db by the deny rule" 5 \
    "^deny: denied by ([^ ]*/)?10-team\\.policy:$L_DENY: " \
    "$COFFER" policy explain read secret:prod/db --user "$CAROL" --group "$G_ML" --group "$G_INT"
exits_out "explain for others (root): ml without interns may read prod/db" 0 \
    "^allow: allowed by ([^ ]*/)?10-team\\.policy:$L_PROD: " \
    "$COFFER" policy explain read secret:prod/db --user "$ALICE" --group "$G_ML"
exits_out "explain for others (root): eve reading hf/token: no rule allows this" 5 '^deny: no rule allows this' \
    "$COFFER" policy explain read secret:hf/token --user "$EVE"
exits_out "explain for others by uid (root)" 0 "^allow: allowed by ([^ ]*/)?10-team\\.policy:$L_DS: " \
    "$COFFER" policy explain read secret:datasets/x --uid "$(id -u "$BOB")"
exits_out "explain for others (dave, admin group) is allowed" 0 "^allow: allowed by ([^ ]*/)?10-team\\.policy:$L_DS: " \
    as "$DAVE" "$COFFER" policy explain read secret:datasets/x --user "$BOB"
denied "explain for others by a non-admin (alice) is denied" admin policy:explain \
    as "$ALICE" "$COFFER" policy explain read secret:prod/db --user "$CAROL"
ok "explain --json is valid JSON naming the file" sh -c \
    '"$1" policy explain read secret:hf/token --user "$2" --group "$3" --json | "$4" -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if \"10-team.policy\" in json.dumps(j) else 1)"' \
    _ "$COFFER" "$ALICE" "$G_ML" "$PY"
fails_with "explain with an unknown action is a usage error (exit 2)" 2 'read' "$COFFER" policy explain frobnicate secret:x

# ---- a refusal never tells whether the secret exists ----
same_refusal() {   # same_refusal DESCRIPTION USER CMD EXISTING MISSING
    local d=$1 u=$2 cmd=$3 a=$4 b=$5 ra rb
    as "$u" "$COFFER" $cmd "$a" >"$T/ra.out" 2>"$T/ra.err"; ra=$?
    as "$u" "$COFFER" $cmd "$b" >"$T/rb.out" 2>"$T/rb.err"; rb=$?
    is "$d: same exit code (5) and message" \
        "$ra $(sed "s#$a#NAME#g" "$T/ra.err") $(sed "s#$a#NAME#g" "$T/ra.out")" \
        "$rb $(sed "s#$b#NAME#g" "$T/rb.err") $(sed "s#$b#NAME#g" "$T/rb.out")"
    is "$d: and it is exit 5" "$ra" 5
}
same_refusal "eve (no rule), get prod/db vs prod/nope" "$EVE" get prod/db prod/nope
same_refusal "carol (deny rule), get prod/db vs prod/nope" "$CAROL" get prod/db prod/nope
same_refusal "bob, versions hf/token vs hf/nope" "$BOB" versions hf/token hf/nope
same_refusal "eve, rm hf/token vs hf/nope" "$EVE" rm hf/token hf/nope

# ---- audit: denials with decision and rule ----
as "$CAROL" "$COFFER" get prod/db >/dev/null 2>&1
is "audit: carol's refused get is recorded as deny on secret:prod/db" "$(audit_last op object decision)" \
    "get secret:prod/db deny"
ok "audit: ... naming the deny rule (10-team.policy:$L_DENY)" \
    sh -c 'case "$1" in *10-team.policy:"$2"*) exit 0;; esac; echo "rule: $1" >&2; exit 1' _ "$(audit_last rule)" "$L_DENY"
as "$EVE" "$COFFER" get hf/token >/dev/null 2>&1
is "audit: eve's refused get is recorded as deny, with her uid" "$(audit_last op object decision uid)" \
    "get secret:hf/token deny $(id -u "$EVE")"
ok "audit: ... with a rule (not null)" test "$(audit_last rule)" != None
note "rule recorded for a no-rule denial: $(audit_last rule)"
as "$ALICE" "$COFFER" get hf/token >/dev/null 2>&1
is "audit: alice's allowed get is recorded as allow" "$(audit_last op object decision)" "get secret:hf/token allow"
ok "audit: ... naming the allow rule (10-team.policy:$L_HF)" \
    sh -c 'case "$1" in *10-team.policy:"$2"*) exit 0;; esac; echo "rule: $1" >&2; exit 1' _ "$(audit_last rule)" "$L_HF"
as "$EVE" "$COFFER" operator seal >/dev/null 2>&1
is "audit: eve's refused seal is recorded as deny" "$(audit_last decision)" deny

# ---- policy check: good and broken directories, local, no daemon needed ----
mkpol() {   # mkpol DIR FILE CONTENT: a root-owned 0644 policy file in a fresh 0755 dir
    rm -rf "$1"; mkdir -m 0755 "$1"; printf '%s\n' "$3" >"$1/$2"; chmod 0644 "$1/$2"
}
C=$T/check.d
NEWALLOW="allow read secret:hf/token user:$EVE"
mkpol "$C" 20-new.policy "$NEWALLOW"
env -u COFFER_SOCKET "$COFFER" --socket "$T/no-daemon.sock" policy check "$C" >"$T/nd.out" 2>&1
is "policy check needs no daemon (exit 0 with no socket)" "$?" 0
ok_out "policy check ok: 1 rules in 1 files" '^ok: 1 rules? in 1 files?' "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '# x\n%s\nallow read\n' "$NEWALLOW")"
fails_with "check: a syntax error (missing object) is reported at file:3:col" 1 '20-new\.policy:3:[0-9]+: .*object' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '%s\nallow read secret:x colour:blue\n' "$NEWALLOW")"
fails_with "check: an unknown key is reported at file:2:21 (the term)" 1 '20-new\.policy:2:21: .*colour' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '%s\nallow read secret:hf/[ab] user:root\n' "$NEWALLOW")"
fails_with "check: a bad glob ('[') is reported at file:2:22" 1 '20-new\.policy:2:22: ' "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '%s\nallow read secret:a/**b user:root\n' "$NEWALLOW")"
fails_with "check: '**' inside a segment is a bad glob, reported at file:2" 1 '20-new\.policy:2:[0-9]+: ' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '%s\nallow read secret:x user:cftnosuch%s\n' "$NEWALLOW" "$S")"
fails_with "check: an unknown user is reported at file:2:26 (the name), naming it" 1 "20-new\\.policy:2:26: .*cftnosuch$S" \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf '%s\nallow read secret:x group:cftnosuch%s\n' "$NEWALLOW" "$S")"
fails_with "check: an unknown group is reported with the name" 1 "20-new\\.policy:2:[0-9]+: .*cftnosuch$S" \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$(printf 'allow read\n%s\ndeny frob secret:x\n' "$NEWALLOW")"
fails_with "check: every error in a file is reported (lines 1 and 3)" 1 '20-new\.policy:1:[0-9]+: ' \
    "$COFFER" policy check "$C"
prev; ok "... line 3 too" grep -qE '20-new\.policy:3:[0-9]+: ' "$T/prev"
mkpol "$C" 20-new.policy "allow read"
printf 'deny frob secret:x\n' >"$C/30-other.policy"; chmod 0644 "$C/30-other.policy"
fails_with "check: errors in two files are both reported (first file)" 1 '20-new\.policy:1:[0-9]+: ' \
    "$COFFER" policy check "$C"
prev; ok "... and the second file" grep -qE '30-other\.policy:1:[0-9]+: ' "$T/prev"
mkpol "$C" 20-new.policy "$NEWALLOW"; chmod 0666 "$C/20-new.policy"
fails_with "check: a world-writable file is refused, naming it" 1 '20-new\.policy: .*writable by group or others' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$NEWALLOW"; chmod 0664 "$C/20-new.policy"
fails_with "check: a group-writable file is refused, naming it" 1 '20-new\.policy: .*writable by group or others' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$NEWALLOW"; chown nobody "$C/20-new.policy"
fails_with "check: a file owned by a non-root user is refused, naming it" 1 '20-new\.policy: .*owned by' \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$NEWALLOW"; chmod 0777 "$C"
fails_with "check: a world-writable policy dir is refused, naming it" 1 "$C.*writable by group or others" \
    "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$NEWALLOW"
ln -s "$C/20-new.policy" "$C/25-link.policy"
fails_with "check: a symlinked *.policy is refused, naming it" 1 '25-link\.policy' "$COFFER" policy check "$C"
mkpol "$C" 20-new.policy "$NEWALLOW"
yes "# $(printf '%097d' 0)" | head -n 11000 >>"$C/20-new.policy"   # 1.1 MB of comments
fails_with "check: a file over 1 MiB is refused, naming it" 1 '20-new\.policy: .*(MiB|large|big|bytes)' \
    "$COFFER" policy check "$C"
rm -rf "$C"; mkdir -m 0755 "$C"; printf '%s\n' "$NEWALLOW" >"$C/notes.txt"
fails_with "check: a dir with no *.policy file (other names ignored) is an error: no rules" 1 \
    'no policy rules \(0 files\).*deny everything' "$COFFER" policy check "$C"
fails_with "check: a missing dir is an error naming it" 1 "$T/no-such\\.d" "$COFFER" policy check "$T/no-such.d"
rm -rf "$C"

# ---- policy reload: every broken case keeps the old policy ----
OLD_OK() {   # after a rejected reload: the old policy is still in force
    ok_out "... $1: the old policy stays (alice still reads hf/token)" '^hf/token-value$' \
        as "$ALICE" "$COFFER" get hf/token
    denied "... $1: the new allow did not take effect (eve still denied)" read secret:hf/token \
        as "$EVE" "$COFFER" get hf/token
}
broken_reload() {   # broken_reload NAME ERE: the state of $P is broken; reload must fail, saying where
    fails_with "reload with $1 fails (exit 1), saying where" 1 "$2" "$COFFER" policy reload
    OLD_OK "$1"
    restore_policy
}
addnew() { printf '%s\n' "$@" >"$P/20-new.policy"; chmod 0644 "$P/20-new.policy"; }
addnew "# a new allow, and a broken line" "$NEWALLOW" "allow read"
broken_reload "a syntax error" '20-new\.policy:3:[0-9]+: '
addnew "$NEWALLOW" "allow read secret:x colour:blue"
broken_reload "an unknown key" '20-new\.policy:2:21: '
addnew "$NEWALLOW" "allow read secret:hf/[ab] user:root"
broken_reload "a bad glob" '20-new\.policy:2:22: '
addnew "$NEWALLOW" "allow read secret:x user:cftnosuch$S"
broken_reload "an unknown user" "20-new\\.policy:2:26: .*cftnosuch$S"
addnew "$NEWALLOW"; chmod 0666 "$P/20-new.policy"
broken_reload "a world-writable file" '20-new\.policy: .*writable by group or others'
addnew "$NEWALLOW"; chown nobody "$P/20-new.policy"
broken_reload "a file owned by nobody" '20-new\.policy: .*owned by'
addnew "$NEWALLOW"; yes "# $(printf '%097d' 0)" | head -n 11000 >>"$P/20-new.policy"
broken_reload "a file over 1 MiB" '20-new\.policy: .*(MiB|large|big|bytes)'
printf '%s\n' "$NEWALLOW" >"$T/elsewhere.policy"; chmod 0644 "$T/elsewhere.policy"
ln -s "$T/elsewhere.policy" "$P/20-new.policy"
broken_reload "a symlinked file" '20-new\.policy'
addnew "$NEWALLOW"; chmod 0777 "$P"
broken_reload "a world-writable dir" "$P.*writable by group or others"
mv "$P" "$T/policy.away"
fails_with "reload with the policy dir gone fails (exit 1), naming it" 1 "$P" "$COFFER" policy reload
rm -rf "$T/policy.away"; restore_policy
OLD_OK "the dir gone"

# an empty dir on reload is refused: a reload must not silently become deny-all
rm -f "$TEAM"
mark=$(log_mark)
fails_with "reload of an empty dir is refused (exit 1), saying the dir holds no rules" 1 \
    'rejected, the old one stays in force: .*holds no policy rules' "$COFFER" policy reload
ok_out "... and alice still reads hf/token under the old policy" '^hf/token-value$' as "$ALICE" "$COFFER" get hf/token
mark=$(log_mark)
kill -HUP "$DAEMON_PID"
ok "... SIGHUP with the empty dir is refused too, and logged" wait_until 5 log_has "$mark" 'policy NOT reloaded.*holds no policy rules'
ok_out "... root (the daemon's uid) still reads" '^hf/token-value$' "$COFFER" get hf/token
restore_policy
ok_out "reload of the team policy again: 7 rules" '^policy reloaded: 7 rules' "$COFFER" policy reload
ok_out "... alice reads hf/token again" '^hf/token-value$' as "$ALICE" "$COFFER" get hf/token

# a good change takes effect; a deny anywhere beats an allow anywhere
addnew "$NEWALLOW" "allow read secret:hf/other user:$EVE" "deny read secret:hf/other user:$EVE"
ok_out "reload of a good change: policy reloaded: 10 rules" '^policy reloaded: 10 rules' "$COFFER" policy reload
ok_out "... eve now reads hf/token" '^hf/token-value$' as "$EVE" "$COFFER" get hf/token
denied "... but not hf/other: the deny in the same file beats the allow" read secret:hf/other \
    as "$EVE" "$COFFER" get hf/other

# SIGHUP does the same
rm -f "$P/20-new.policy"
mark=$(log_mark); kill -HUP "$DAEMON_PID"
ok "SIGHUP reloads the policy: the log says 7 rules" wait_until 5 log_has "$mark" 'reloaded.*7 rules'
denied "... eve is denied hf/token again" read secret:hf/token as "$EVE" "$COFFER" get hf/token
addnew "$NEWALLOW" "allow read"
mark=$(log_mark); kill -HUP "$DAEMON_PID"
ok "SIGHUP with a broken policy: the log says where (20-new.policy:2:col)" \
    wait_until 5 log_has "$mark" '20-new\.policy:2:[0-9]+: '
OLD_OK "SIGHUP broken"
ok "... the daemon is still running" kill -0 "$DAEMON_PID"
restore_policy

# ---- the daemon started with a broken, empty or missing policy dir ----
restart_with() {   # restart_with DIR: restart, unseal as root
    stop_daemon
    mark=$(log_mark)
    start_daemon --policy-dir "$1" && unseal_keyfile
}
B=$T/broken.d
mkpol "$B" 10-bad.policy "$(printf '%s\nallow read\n' "allow read,list secret:** user:$ALICE")"
if restart_with "$B"; then
    ok "started with a broken policy: the log says it is denying everything" log_has "$mark" 'denying everything'
    ok "... and where the error is (10-bad.policy:2:col)" log_has "$mark" '10-bad\.policy:2:[0-9]+: '
    denied "... alice is denied, even what the broken file would allow" read secret:hf/token \
        as "$ALICE" "$COFFER" get hf/token
    ok_out "... root (the daemon's uid) is still served" '^hf/token-value$' "$COFFER" get hf/token
    exits_out "... explain for root names builtin:daemon-uid" 0 'builtin:daemon-uid' \
        "$COFFER" policy explain read secret:hf/token
    mkpol "$B" 10-bad.policy "allow read,list secret:** user:$ALICE"
    ok_out "... fixing the file and reloading: 1 rules" '^policy reloaded: 1 rules?' "$COFFER" policy reload
    ok_out "... now alice reads" '^hf/token-value$' as "$ALICE" "$COFFER" get hf/token
else
    for i in 1 2 3 4 5 6 7; do skip "started with a broken policy ($i)" "cofferd did not start"; done
fi
rm -rf "$B"; mkdir -m 0755 "$B"
if restart_with "$B"; then
    ok "started with an empty policy dir: the log says it is denying everything" log_has "$mark" 'denying everything'
    denied "... alice is denied" read secret:hf/token as "$ALICE" "$COFFER" get hf/token
    ok_out "... root is still served" '^hf/token-value$' "$COFFER" get hf/token
else
    for i in 1 2 3; do skip "started with an empty policy dir ($i)" "cofferd did not start"; done
fi
rm -rf "$B"
if restart_with "$B"; then
    ok "started with a missing policy dir: the log says it is denying everything" log_has "$mark" 'denying everything'
    ok "... and names the dir" log_has "$mark" "$B"
    denied "... alice is denied" read secret:hf/token as "$ALICE" "$COFFER" get hf/token
    ok_out "... root is still served" '^hf/token-value$' "$COFFER" get hf/token
else
    for i in 1 2 3 4; do skip "started with a missing policy dir ($i)" "cofferd did not start"; done
fi

done_testing
