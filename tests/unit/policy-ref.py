#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reference evaluator for coffer.policy(5), written from the man page and
not from daemon/policy.c, so the matrix test compares two readings of the
same specification.

    policy-ref.py DIR CASES.json

CASES.json is a list of objects with the keys uid, gid, groups (list),
exe ("" = unknown), unit ("" = none), session (bool), minute (minutes since
local midnight), action and object. Prints one line per case, tab-separated:
allow|deny FILE:LINE|- TTL USES DEPENDS_ON_EXE DEPENDS_ON_UNIT
(FILE = the file's base name), like tests/unit/policy-eval-cli.

Only valid policies are evaluated; a syntax error is reported and exits 1
(this is not the place to check error messages)."""

import grp
import json
import os
import pwd
import re
import sys

ACTIONS = ["read", "list", "write", "delete", "issue", "delegate", "admin"]
KINDS = ["secret", "token", "store", "policy", "audit"]
TERMS = {"user": ":", "uid": ":", "group": ":", "unit": ":", "exe": ":",
         "session": ":", "time": ":", "ttl": "<=", "uses": "<="}
DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class PolicyError(Exception):
    pass


def glob_regex(pattern):
    """A glob as a regex over the text with '/' put before every segment:
    '**' (a whole segment) is any number of '/segment', '*' is [^/]*."""
    out = []
    for seg in pattern.split("/"):
        if seg == "**":
            out.append("(?:/[^/]*)*")
        elif "**" in seg or any(c in seg for c in "?[]{}\\#,") or seg == "":
            raise PolicyError("bad glob %r" % pattern)
        else:
            out.append("/" + "[^/]*".join(re.escape(part) for part in seg.split("*")))
    return re.compile("".join(out))


def glob_match(rx, text):
    return rx.fullmatch("/" + text) is not None


def parse_time(item):
    m = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", item)
    if not m:
        raise PolicyError("bad time %r" % item)
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise PolicyError("bad time %r" % item)
    return (h1 * 60 + m1, h2 * 60 + m2)


def parse_duration(v):
    m = re.fullmatch(r"(\d+)([smhd]?)", v)
    if not m:
        raise PolicyError("bad duration %r" % v)
    sec = int(m.group(1)) * DURATION.get(m.group(2) or "s")
    if sec == 0 or sec > 3650 * 86400:
        raise PolicyError("bad duration %r" % v)
    return sec


def parse_term(rule, tok):
    m = re.match(r"([a-z]+)(:|<=)(.*)$", tok)
    if not m or TERMS.get(m.group(1)) != m.group(2) or m.group(1) in rule["terms"]:
        raise PolicyError("bad term %r" % tok)
    key, value = m.group(1), m.group(3)
    items = value.split(",")
    if any(i == "" for i in items):
        raise PolicyError("empty item in %r" % tok)
    if key == "user":
        value = {pwd.getpwnam(i).pw_uid for i in items}
    elif key == "uid":
        value = {int(i) for i in items}
    elif key == "group":
        value = {grp.getgrnam(i).gr_gid for i in items}
    elif key in ("unit", "exe"):
        if key == "exe" and any(not i.startswith("/") for i in items):
            raise PolicyError("exe must be absolute")
        value = [glob_regex(i[1:] if key == "exe" else i) for i in items]
        if key == "exe":  # the leading '/' is an empty first segment
            value = [re.compile("/" + rx.pattern) for rx in value]
    elif key == "session":
        if value != "login":
            raise PolicyError("session must be login")
        value = True
    elif key == "time":
        value = [parse_time(i) for i in items]
    elif key == "ttl":
        value = parse_duration(value)
    elif key == "uses":
        value = int(value)
        if not 1 <= value <= 10**9:
            raise PolicyError("bad uses")
    if key in ("ttl", "uses") and rule["deny"]:
        raise PolicyError("ttl/uses on deny")
    rule["terms"][key] = value


def parse_rule(tokens):
    effect, actions, obj = tokens[0], tokens[1], tokens[2]
    if effect not in ("allow", "deny"):
        raise PolicyError("bad effect")
    if actions == "*":
        acts = set(ACTIONS)
    else:
        acts = set(actions.split(","))
        if not acts <= set(ACTIONS):
            raise PolicyError("bad actions")
    if obj == "*":
        kind, rx = None, None
    else:
        kind, _, g = obj.partition(":")
        if kind not in KINDS or g == "":
            raise PolicyError("bad object")
        rx = glob_regex(g)
    rule = {"deny": effect == "deny", "actions": acts, "kind": kind, "rx": rx, "terms": {}}
    for tok in tokens[3:]:
        parse_term(rule, tok)
    return rule


def load(directory):
    rules = []
    names = sorted((n for n in os.listdir(directory) if n.endswith(".policy")
                    and not n.startswith(".") and len(n) > len(".policy")),
                   key=lambda n: n.encode())
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            text = f.read().decode()
        for lineno, line in enumerate(text.split("\n"), 1):
            line = re.sub(r"(^|[ \t])#.*", "", line)
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 3:
                raise PolicyError("%s:%d: short rule" % (name, lineno))
            try:
                rule = parse_rule(tokens)
            except (PolicyError, KeyError, ValueError) as e:
                raise PolicyError("%s:%d: %s" % (name, lineno, e))
            rule["where"] = "%s:%d" % (name, lineno)
            rules.append(rule)
    return rules


def in_window(windows, minute):
    for start, end in windows:
        if start < end and start <= minute < end:
            return True
        if start > end and (minute >= start or minute < end):
            return True
    return False


def strong_match(rule, case):
    """Object and every term except unit and exe."""
    if case["action"] not in rule["actions"]:
        return False
    if rule["kind"] is not None:
        kind, sep, rest = case["object"].partition(":")
        if not sep or kind != rule["kind"] or not glob_match(rule["rx"], rest):
            return False
    t = rule["terms"]
    groups = {case["gid"]} | set(case["groups"])
    if "user" in t and case["uid"] not in t["user"]:
        return False
    if "uid" in t and case["uid"] not in t["uid"]:
        return False
    if "group" in t and not groups & t["group"]:
        return False
    if "session" in t and not case["session"]:
        return False
    if "time" in t and not in_window(t["time"], case["minute"]):
        return False
    return True


def weak_match(rule, case):
    t = rule["terms"]
    for key in ("unit", "exe"):
        if key in t:
            value = case[key]
            if value == "" or not any(rx.fullmatch("/" + value) for rx in t[key]):
                return False
    return True


def evaluate(rules, case):
    """Returns (effect, where, ttl, uses, dep_exe, dep_unit) per coffer.policy(5):
    the first matching deny decides; else the first matching allow; else deny.
    depends_on_exe/unit: the deciding rule has such a term; for an allow also
    any deny rule that matched in all but unit/exe; with no rule matched any
    rule that matched in all but unit/exe."""
    near = [r for r in rules if strong_match(r, case)]
    full = [r for r in near if weak_match(r, case)]

    def flags(rs):
        return (int(any("exe" in r["terms"] for r in rs)), int(any("unit" in r["terms"] for r in rs)))

    denies = [r for r in full if r["deny"]]
    if denies:
        return ("deny", denies[0]["where"], 0, 0) + flags([denies[0]])
    allows = [r for r in full if not r["deny"]]
    if allows:
        a = allows[0]
        return ("allow", a["where"], a["terms"].get("ttl", 0), a["terms"].get("uses", 0)) + \
            flags([a] + [r for r in near if r["deny"]])
    return ("deny", "-", 0, 0) + flags(near)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: policy-ref.py DIR CASES.json\n")
        return 2
    try:
        rules = load(sys.argv[1])
    except PolicyError as e:
        sys.stderr.write("policy-ref: %s\n" % e)
        return 1
    with open(sys.argv[2]) as f:
        cases = json.load(f)
    for case in cases:
        print("\t".join(str(x) for x in evaluate(rules, case)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
