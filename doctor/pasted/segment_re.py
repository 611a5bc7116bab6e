"""Regular expressions shared by the recognisers (segment.py, forms.py, chunks.py)."""

from __future__ import annotations

import re

_ADDR = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]"
_TS = (
    r"^(?:\[\s*\+?\d+\.\d+\]|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]"
    r"|<\d>\[\s*\d+\.\d+\])\s?(?:\[\s*[CT]\d+\]\s?)?"
)
_JOURNAL = r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) (?P<host>\S+) kernel: "

ADDR = _ADDR
TS_RX = re.compile(_TS)
