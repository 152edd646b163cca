"""Host-key checking cannot be weakened: which ``ssh_options`` are refused, and which ssh
messages mean a host key did not verify.

An ``ssh_options`` entry becomes ``ssh -o ENTRY``, which ssh parses as one config line: a
keyword, then whitespace and/or one ``=``, then the value; keywords and yes/no values are
case-insensitive, and values may be quoted. ``parse`` reads it the same way, so no spelling
(``StrictHostKeyChecking no``, ``=OFF``, a TAB, ``-oStrictHostKeyChecking=false``, quotes)
slips through. Refused:

- StrictHostKeyChecking no/off/false/accept-new (accept-new trusts the first key it sees);
- UserKnownHostsFile / GlobalKnownHostsFile naming /dev/null, ``none`` or nothing (that makes
  every host unknown; a real file of your own is fine);
- KnownHostsCommand (any command but ``none``: it can vouch for any key);
- VerifyHostKeyDNS yes (trusts SSHFP records from possibly unsigned DNS);
- Host, Match, Include (they would scope or pull in other settings).

CheckHostIP is allowed either way: it adds a check of the address next to the name-based host
key check, which stays on (OpenSSH defaults it to no since 8.5).
"""

from __future__ import annotations

import re

_SEP = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*)$", re.DOTALL)
_NULL_FILES = {"/dev/null", "none", ""}

# ssh's own words for a host key that did not verify (any LogLevel from ERROR up prints them)
HOST_KEY_ALARMS = (
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "POSSIBLE DNS SPOOFING",
    "Host key verification failed",
    "differs from the key for the IP address",
    "HOST IDENTIFICATION HAS CHANGED",
)


def parse(entry: str) -> tuple[str, str]:
    """(lower-case keyword, value) of one ``-o`` entry, the way ssh splits a config line."""
    text = entry.strip()
    if text.startswith("-o"):
        text = text[2:].strip()
    m = _SEP.match(text)
    if not m:
        return text.lower(), ""
    value = m.group(2).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return m.group(1).lower(), value


def weakens(entry: str) -> str | None:
    """Why ``entry`` weakens host-key checking (or is not a plain option), else None."""
    if any(ord(c) < 32 and c not in " \t" for c in entry):
        return "contains a control character"
    key, value = parse(entry)
    low = value.lower()
    if key == "stricthostkeychecking" and low in {"no", "off", "false", "accept-new", "0"}:
        return f"StrictHostKeyChecking {value} accepts host keys it cannot verify"
    if key in ("userknownhostsfile", "globalknownhostsfile"):
        files = low.split() or [""]
        if any(f.strip("\"'") in _NULL_FILES for f in files):
            name = "UserKnownHostsFile" if key.startswith("user") else "GlobalKnownHostsFile"
            return f"{name} {value or '(empty)'} makes every host key unknown"
    if key == "knownhostscommand" and low != "none":
        return "KnownHostsCommand can vouch for any host key"
    if key == "verifyhostkeydns" and low in {"yes", "true"}:
        return "VerifyHostKeyDNS yes trusts host keys from DNS"
    if key in ("host", "match", "include"):
        return f"'{key}' is not an option ssh_options can set"
    return None


def alarm(stderr: str) -> str | None:
    """ssh's line saying a host key did not verify (or changed), if ``stderr`` has one."""
    for line in stderr.splitlines():
        if any(a.lower() in line.lower() for a in HOST_KEY_ALARMS):
            return line.strip(" @\t")
    return None
