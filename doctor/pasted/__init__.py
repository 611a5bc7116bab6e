"""Pasted text, the third source beside the live host and a snapshot (`check --from`).

read.py reads the inputs within bounds, segment.py cuts them into chunks of one recognised
kind, chunks.py parses each kind, texthost.py turns what they show into the typed facts the
checks read."""

from __future__ import annotations

from doctor.pasted.chunks import (
    parse_dmesg,
    parse_group_listing,
    parse_group_ls,
    parse_kvm_ok,
    parse_lscpu,
    parse_lsmod,
    parse_lspci_chunk,
)
from doctor.pasted.read import decode_bytes, looks_binary, read_input
from doctor.pasted.segment import classify_line, evidence_from_text, load_inputs, segment
from doctor.pasted.texthost import PastedFacts, cmd_check_from, load_pasted, run_pasted, to_json

__all__ = [
    "PastedFacts",
    "classify_line",
    "cmd_check_from",
    "decode_bytes",
    "evidence_from_text",
    "load_inputs",
    "load_pasted",
    "looks_binary",
    "parse_dmesg",
    "parse_group_listing",
    "parse_group_ls",
    "parse_kvm_ok",
    "parse_lscpu",
    "parse_lsmod",
    "parse_lspci_chunk",
    "read_input",
    "run_pasted",
    "segment",
    "to_json",
]
