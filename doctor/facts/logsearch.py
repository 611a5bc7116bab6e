"""The kernel log fact. `KernelLog.grep` is the definition (each line searched); `JoinedLog`, what every
source hands the checks, searches the whole log once instead of line by line (a paste may hold 100,000
lines; ~15 checks grep the log of every run): the same lines, in the same order, as `KernelLog.grep`.

Each pattern is searched once per log (checks grep the same ones). Each hit in the joined text is confirmed on its own line (a pattern whose `\\s` or `[^...]` spans the line break
is not taken for a hit on the first line), then the search goes on at the next line."""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import cached_property

from doctor.datarecord import record


@record(frozen=True)
class KernelLog:
    lines: tuple[str, ...]
    source: str

    def grep(self, pattern: str | re.Pattern[str]) -> list[str]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [ln for ln in self.lines if rx.search(ln)]


@record(frozen=True)
class JoinedLog(KernelLog):
    @cached_property
    def _joined(self) -> tuple[str, list[int]]:
        starts = [0]
        for ln in self.lines:
            starts.append(starts[-1] + len(ln) + 1)
        return "\n".join(self.lines), starts

    @cached_property
    def _memo(self) -> dict[tuple[str, int], list[str]]:
        return {}

    def grep(self, pattern: str | re.Pattern[str]) -> list[str]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        key = (rx.pattern, rx.flags)
        if key not in self._memo:
            self._memo[key] = self._grep(rx)
        return list(self._memo[key])

    def _grep(self, rx: re.Pattern[str]) -> list[str]:
        lits = literal_prefixes(rx.pattern)
        if lits is not None:  # every alternative starts with a literal: find those (C speed), confirm each line
            text, starts = self._joined
            hay = text.lower() if rx.flags & re.IGNORECASE else text
            if len(hay) == len(text):
                if rx.flags & re.IGNORECASE:
                    lits = [x.lower() for x in lits]
                hit: set[int] = set()
                for lit in lits:
                    i = hay.find(lit)
                    while i != -1:
                        li = bisect_right(starts, i) - 1
                        hit.add(li)
                        i = hay.find(lit, starts[li + 1]) if li + 1 < len(self.lines) else -1
                return [self.lines[i] for i in sorted(hit) if rx.search(self.lines[i])]
        return self._scan(rx)

    def _scan(self, rx: re.Pattern[str]) -> list[str]:
        # the scan may find more than rx (a leading \b takes away re's literal prefix search, so it is dropped
        # for the scan); each hit is confirmed with rx on its own line
        scan = rx.pattern[2:] if rx.pattern.startswith("\\b") else rx.pattern
        multi = re.compile(scan, rx.flags | re.M)
        if not self.lines:
            return []
        text, starts = self._joined
        out: list[str] = []
        pos = 0
        while True:
            m = multi.search(text, pos)
            if m is None:
                return out
            i = bisect_right(starts, m.start()) - 1
            if rx.search(self.lines[i]):
                out.append(self.lines[i])
            pos = starts[i + 1]
            if pos > len(text):
                return out


_META = set(".^$*+?{}[]()|\\")
_CLASS_ESCAPES = set("dDsSwWbBAZ0123456789")


def top_level_alternatives(pattern: str) -> list[str]:
    """The alternatives of pattern's top-level `|`, escapes kept as written."""
    alts, depth, cur, esc = [], 0, "", False
    for ch in pattern:
        if esc:
            cur, esc = cur + ch, False
            continue
        if ch == "\\":
            cur, esc = cur + ch, True
            continue
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            alts.append(cur)
            cur = ""
        else:
            cur += ch
    return alts + [cur]


def literal_prefixes(pattern: str) -> list[str] | None:
    """The literal each top-level alternative of pattern starts with (3 characters at least), or None where one
    does not: a line without any of them cannot match. Inline flags, anchors and classes end a literal."""
    if pattern.startswith("(?") and not pattern.startswith(("(?:", "(?P", "(?=", "(?!", "(?<")):
        return None
    out = []
    for alt in top_level_alternatives(pattern):
        lit = ""
        i = 2 if alt.startswith("\\b") else 0  # a leading word boundary matches no character
        while i < len(alt):
            ch = alt[i]
            if ch == "\\" and i + 1 < len(alt):
                nxt = alt[i + 1]
                if nxt in _CLASS_ESCAPES or nxt.isalpha():
                    break
                lit, i = lit + nxt, i + 2
                continue
            if ch in _META:
                if ch in "?*{" and lit:
                    lit = lit[:-1]  # the character before a quantifier is optional
                break
            lit, i = lit + ch, i + 1
        if len(lit) < 3:
            return None
        out.append(lit)
    return out
