"""Regular expressions shared by the recognisers (segment.py, forms.py, chunks.py)."""

from __future__ import annotations

import re
from bisect import bisect_right

_ADDR = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]"
_TS = (
    r"^(?:\[\s*\+?\d+\.\d+\]|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]"
    r"|<\d>\[\s*\d+\.\d+\])\s?(?:\[\s*[CT]\d+\]\s?)?"
)
_JOURNAL = r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) (?P<host>\S+) kernel: "

ADDR = _ADDR
TS_RX = re.compile(_TS)


def line_starts(lines: list[str]) -> list[int]:
    """Offsets of each line in "\\n".join(lines), and one past the end."""
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    return starts


def keyword_lines(text: str, lines: list[str], keywords: tuple[str, ...], lower: bool = True) -> list[int]:
    """Indexes of the lines of text (= "\\n".join(lines)) that hold one of keywords: str.find on the whole text,
    C speed (a regex alternation of literals scans far slower). Keywords in lower case when lower."""
    hay = text.lower() if lower else text
    if lower and len(hay) != len(text):  # lower() changed lengths (a few Unicode letters): every line
        return list(range(len(lines)))
    starts: list[int] | None = None
    hit: set[int] = set()
    for kw in keywords:
        i = hay.find(kw)
        if i == -1:
            continue
        if starts is None:
            starts = line_starts(lines)
        while i != -1:
            li = bisect_right(starts, i) - 1
            hit.add(li)
            i = hay.find(kw, starts[li + 1]) if li + 1 < len(lines) else -1
    return sorted(hit)
