#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The policy engine against an independent reference evaluator.
# Generates (with a fixed seed) a policy directory and a few thousand
# (subject, action, object) cases covering users, groups, uids, units, exes,
# login sessions, time windows (with midnight wrap), deny overlaps and
# '*'/'**' globs; runs tests/unit/policy-eval-cli (daemon/policy.c) and
# tests/unit/policy-ref.py on them and compares every answer: decision,
# deciding rule, ttl/uses bounds and the exe/unit dependency flags.
# Uses only users and groups every Debian has, so it needs no root.
#   POLICY_EVAL_CLI  the driver (default $top_builddir/tests/unit/policy-eval-cli)
#   MATRIX_CASES     number of cases (default 3000), MATRIX_SEED (default 20240611)
set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
cli=${POLICY_EVAL_CLI:-$builddir/tests/unit/policy-eval-cli}
ref=$srcdir/tests/unit/policy-ref.py
python=/usr/bin/python3
ncases=${MATRIX_CASES:-3000}
seed=${MATRIX_SEED:-20240611}

if [ ! -x "$python" ]; then
        echo "1..0 # SKIP $python not found"
        exit 0
fi
if [ ! -x "$cli" ]; then
        echo "Bail out! $cli not built"
        exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-policy-matrix.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -m 0755 "$tmp/policy.d"

# ---- generate the policy and the cases ----
"$python" - "$tmp" "$ncases" "$seed" <<'EOF' || { echo "Bail out! generator failed"; exit 1; }
import json, random, sys

tmp, ncases, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)

USERS = {"root": 0, "daemon": 1, "bin": 2, "sys": 3, "nobody": 65534}
GROUPS = {"root": 0, "daemon": 1, "bin": 2, "sys": 3, "adm": 4, "users": 100, "nogroup": 65534}
UIDS = [0, 1, 2, 3, 1000, 1001, 65534]
ACTIONS = ["read", "list", "write", "delete", "issue", "delegate", "admin"]
OBJECT_PATTERNS = [
    "*", "secret:**", "secret:*", "secret:hf/*", "secret:hf/**", "secret:team/*/key",
    "secret:users/*/ssh", "secret:**/token", "secret:db/train-ro", "secret:db/*",
    "secret:prod/*", "secret:prod/**", "secret:a*b/c", "secret:x/**/y", "secret:night/*",
    "secret:*/*", "secret:**/key", "token:inference-*", "token:**", "token:inference-api",
    "store:*", "store:seal", "policy:reload", "policy:*", "audit:*", "audit:verify",
]
UNIT_GLOBS = ["trainer@*.service", "cron.service", "*.service", "slurm-*.scope", "user@*"]
EXE_GLOBS = ["/usr/bin/python3*", "/usr/bin/*", "/opt/**/bin/tool", "/usr/bin/bash", "/**", "/usr/*/x"]
TIMES = ["09:00-17:00", "20:00-06:00", "00:00-12:00", "22:30-23:45", "23:00-01:00", "06:00-06:01"]
DURATIONS = ["30s", "5m", "1h", "24h", "7d", "90"]

# Random patterns and names over a tiny alphabet, so '*' and '**' meet
# every kind of overlap the fixed lists above miss.
def random_segment(glob):
    if glob and rnd.random() < 0.2:
        return "**"
    chars = "ab*" if glob else "ab"
    seg = "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 4)))
    while "**" in seg:
        seg = seg.replace("**", "*")
    return seg or ("*" if glob else "a")

def random_path(glob):
    return "/".join(random_segment(glob) for _ in range(rnd.randint(1, 5)))

OBJECT_PATTERNS += ["secret:" + random_path(True) for _ in range(30)]

def pick(pool, lo, hi):
    return rnd.sample(pool, rnd.randint(lo, min(hi, len(pool))))

BROAD = {"*", "secret:**", "token:**", "secret:*/*", "store:*", "policy:*", "audit:*"}

def rule():
    # Denies and broad objects always carry a term, or a few rules would
    # decide nearly every case and the matrix would test little.
    deny = rnd.random() < 0.2
    acts = "*" if rnd.random() < 0.05 else ",".join(pick(ACTIONS, 1, 3))
    obj = rnd.choice(OBJECT_PATTERNS)
    if deny:
        while obj in BROAD:
            obj = rnd.choice(OBJECT_PATTERNS)
    terms = []
    kinds = ["user", "uid", "group", "unit", "exe", "session", "time"]
    if not deny:
        kinds += ["ttl", "uses"]
    for k in pick(kinds, 1 if deny or obj in BROAD else 0, 3):
        if k == "user":
            terms.append("user:" + ",".join(pick(list(USERS), 1, 2)))
        elif k == "uid":
            terms.append("uid:" + ",".join(str(u) for u in pick(UIDS, 1, 3)))
        elif k == "group":
            terms.append("group:" + ",".join(pick(list(GROUPS), 1, 2)))
        elif k == "unit":
            terms.append("unit:" + ",".join(pick(UNIT_GLOBS, 1, 2)))
        elif k == "exe":
            terms.append("exe:" + ",".join(pick(EXE_GLOBS, 1, 2)))
        elif k == "session":
            terms.append("session:login")
        elif k == "time":
            terms.append("time:" + ",".join(pick(TIMES, 1, 2)))
        elif k == "ttl":
            terms.append("ttl<=" + rnd.choice(DURATIONS))
        elif k == "uses":
            terms.append("uses<=" + str(rnd.randint(1, 5)))
    sep = lambda: rnd.choice([" ", "  ", "\t", " \t "])
    line = sep().join(["deny" if deny else "allow", acts, obj] + terms)
    if rnd.random() < 0.1:
        line += "   # a comment"
    return line

for name, n in [("10-base.policy", 40), ("20-teams.policy", 60), ("50-deny.policy", 25),
                ("90-misc.policy", 35), ("README", 3)]:
    with open("%s/policy.d/%s" % (tmp, name), "w") as f:
        f.write("# generated, seed %d\n\n" % seed)
        for i in range(n):
            f.write(rule() + "\n")
            if rnd.random() < 0.05:
                f.write("   # comment line\n\n")

OBJECTS = [
    "secret:hf/token", "secret:hf/a/b", "secret:hf", "secret:team/ml/key", "secret:team/key",
    "secret:users/alice/ssh", "secret:users/alice/x/ssh", "secret:token", "secret:a/b/token",
    "secret:db/train-ro", "secret:db/train-rw", "secret:prod/db", "secret:prod/a/b", "secret:ab/c",
    "secret:axxb/c", "secret:a/b/c", "secret:night/k", "secret:x/y", "secret:x/1/2/y", "secret:zzz",
    "secret:key", "token:inference-api", "token:inference-", "token:other", "token:a/b",
    "store:seal", "store:init", "policy:reload", "audit:verify", "nokind", "secretx:hf/token",
]
EXES = ["", "/usr/bin/python3.11", "/usr/bin/python3", "/usr/bin/bash", "/opt/x/y/bin/tool",
        "/opt/bin/tool", "/usr/local/bin/x", "/usr/sbin/x"]
UNITS = ["", "trainer@1.service", "cron.service", "sshd.service", "slurm-42.scope", "user@1000.service"]
MINUTES = [0, 59, 60, 359, 360, 361, 540, 600, 1019, 1020, 1200, 1349, 1350, 1380, 1425, 1439]
gids = list(GROUPS.values())
cases = []
for _ in range(ncases):
    cases.append({
        "uid": rnd.choice(UIDS),
        "gid": rnd.choice(gids + [1000]),
        "groups": sorted(pick(gids, 0, 3)),
        "exe": rnd.choice(EXES),
        "unit": rnd.choice(UNITS),
        "session": rnd.random() < 0.5,
        "minute": rnd.choice(MINUTES) if rnd.random() < 0.7 else rnd.randint(0, 1439),
        "action": rnd.choice(ACTIONS),
        "object": rnd.choice(OBJECTS) if rnd.random() < 0.7 else "secret:" + random_path(False),
    })
with open(tmp + "/cases.json", "w") as f:
    json.dump(cases, f)
with open(tmp + "/cases.tsv", "w") as f:
    for c in cases:
        f.write("\t".join([str(c["uid"]), str(c["gid"]),
                           ",".join(str(g) for g in c["groups"]) or "-",
                           c["exe"] or "-", c["unit"] or "-", "1" if c["session"] else "0",
                           str(c["minute"]), c["action"], c["object"]]) + "\n")
EOF
chmod 0644 "$tmp"/policy.d/*

# ---- run both and compare ----
if ! "$cli" "$tmp/policy.d" <"$tmp/cases.tsv" >"$tmp/c.out" 2>"$tmp/c.err"; then
        echo "Bail out! policy-eval-cli failed: $(head -n 3 "$tmp/c.err")"
        exit 1
fi
if ! "$python" "$ref" "$tmp/policy.d" "$tmp/cases.json" >"$tmp/ref.out" 2>"$tmp/ref.err"; then
        echo "Bail out! policy-ref.py failed: $(head -n 3 "$tmp/ref.err")"
        exit 1
fi

"$python" - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
cases = json.load(open(tmp + "/cases.json"))
c_out = open(tmp + "/c.out").read().splitlines()
r_out = open(tmp + "/ref.out").read().splitlines()
n = len(cases)
bad = [i for i in range(n) if i >= len(c_out) or i >= len(r_out) or c_out[i] != r_out[i]]
if len(c_out) != n or len(r_out) != n:
    bad = bad or [n]
tests = []
tests.append((not bad, "%d cases, %d mismatches" % (n, len(bad))))
for i in bad[:20]:
    c = cases[i] if i < n else {}
    tests.append((False, "case %d %s: C %r, reference %r" % (
        i + 1, json.dumps(c, sort_keys=True),
        c_out[i] if i < len(c_out) else None, r_out[i] if i < len(r_out) else None)))

# The matrix is only worth something if every kind of answer occurs often.
cols = [l.split("\t") for l in r_out]
count = lambda f: sum(1 for c in cols if f(c))
kinds = {
    "allowed by a rule": count(lambda c: c[0] == "allow"),
    "denied by a deny rule": count(lambda c: c[0] == "deny" and c[1] != "-"),
    "denied, no rule": count(lambda c: c[1] == "-"),
    "with ttl/uses bounds": count(lambda c: c[0] == "allow" and (c[2] != "0" or c[3] != "0")),
    "depending on exe": count(lambda c: c[4] == "1"),
    "depending on unit": count(lambda c: c[5] == "1"),
}
rules_deciding = len({c[1] for c in cols if c[1] != "-"})
need = max(5, n // 50)
tests.append((all(v >= need for v in kinds.values()),
              "coverage: " + ", ".join("%d %s" % (v, k) for k, v in kinds.items())
              + " (each needs >= %d)" % need))
tests.append((rules_deciding >= 40, "%d distinct rules decided at least one case (needs >= 40)" % rules_deciding))
for i, (ok, text) in enumerate(tests, 1):
    print("%s %d - %s" % ("ok" if ok else "not ok", i, text))
print("1..%d" % len(tests))
sys.exit(0 if all(ok for ok, _ in tests) else 1)
EOF
