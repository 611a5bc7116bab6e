"""A kernel log fact whose `grep` searches the whole log once instead of line by line (a paste may hold 100,000
lines and ~15 checks grep it): the same lines, in the same order, as `KernelLog.grep`.

Each pattern is searched once per log (checks grep the same ones). Each hit in the joined text is confirmed on its own line (a pattern whose `\\s` or `[^...]` spans the line break
is not taken for a hit on the first line), then the search goes on at the next line."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property

from doctor.facts import KernelLog


@dataclass(frozen=True)
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
