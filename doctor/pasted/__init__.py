"""Pasted text, the third source beside the live host and a snapshot (`check --from`).

read.py reads the inputs within bounds, forms.py takes off quoting and markup and rewrites the group
scripts' shapes, segment.py cuts them into chunks of one recognised kind, chunks.py and records.py
parse each kind, observe.py finds the QEMU / libvirt / kernel error (and proof) lines, texthost.py
turns what they show into the typed (partial) facts the checks read (the error lines as
`Facts.observed()`, doctor/facts/logsearch.py's kernel log), run.py runs the suite once on them; the report renders
as any other."""

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
from doctor.pasted.run import PastedRun, load_pasted, run_pasted, target_gpus, tie_errors, to_json
from doctor.pasted.segment import classify_line, evidence_from_text, load_inputs, segment
from doctor.pasted.texthost import PastedFacts

__all__ = [
    "PastedFacts",
    "PastedRun",
    "classify_line",
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
    "target_gpus",
    "tie_errors",
    "to_json",
]
