"""`check --hosts ansible://PATTERN [-i INVENTORY] [--jobs N] [--keep DIR]`.

Ansible is the engine: transport, privilege, inventory and parallelism are the user's own
configuration. gpudoctor writes a one-task playbook that runs the collection's
`gpudoctor.doctor.gpudoctor_record` module (ansible/ansible_collections/gpudoctor/doctor/; the
target needs only Python), runs `ansible-playbook` by argv with the JSON stdout callback, brings
each host's snapshot back and judges them all here with the same checks (doctor/fleet.py).
A host Ansible could not reach is listed as unreachable, and one whose recording failed as an
error: never dropped.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from doctor.errors import BadInput, DoctorError
from doctor.fleet import HostOutcome

SCHEME = "ansible://"
MODULE = "gpudoctor.doctor.gpudoctor_record"
MAX_SNAPSHOT = 64 * 1024 * 1024  # base64-decoded; a recorded host is ~100 KiB


def parse_pattern(spec: str) -> str:
    if not spec.startswith(SCHEME):
        raise BadInput(f"--hosts {spec}: give an Ansible host pattern as ansible://PATTERN (e.g. ansible://gpu_hosts)")
    pat = spec[len(SCHEME):]
    # Ansible templates play fields: a pattern must not smuggle Jinja or options into the playbook
    if not pat or pat.startswith("-") or re.search(r"[{}\s\x00-\x1f'\"]", pat):
        raise BadInput(f"--hosts {spec}: not an Ansible host pattern")
    return pat


def collections_path() -> str:
    """This checkout's collection first, then Ansible's own (or the user's) collections path."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ansible")
    user = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") \
        or "~/.ansible/collections:/usr/share/ansible/collections"
    if os.path.isfile(os.path.join(here, "ansible_collections", "gpudoctor", "doctor", "galaxy.yml")):
        return f"{here}:{user}"
    return user


def find_playbook_exe() -> str:
    sibling = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    exe = sibling if os.access(sibling, os.X_OK) else shutil.which("ansible-playbook")
    if not exe:
        raise BadInput("--hosts needs Ansible: ansible-playbook not found (pip install 'gpudoctor[fleet]')")
    return exe


def playbook(pattern: str, redact: bool) -> list[dict[str, Any]]:
    return [{
        "name": "gpudoctor: record each host",
        "hosts": pattern,
        "gather_facts": False,
        "tasks": [{"name": "record a gpudoctor snapshot", MODULE: {"redact": redact}}],
    }]


def run_ansible(pattern: str, inventories: list[str], jobs: int | None, redact: bool, work: str) -> dict[str, Any]:
    """Run the playbook; the JSON callback's document."""
    for inv in inventories:
        if not os.path.exists(inv) and "," not in inv:
            raise BadInput(f"-i {inv}: no such inventory")
    pb = os.path.join(work, "gpudoctor-record.json")  # JSON is YAML
    with open(pb, "w", encoding="utf-8") as f:
        json.dump(playbook(pattern, redact), f)
    argv = [find_playbook_exe(), pb]
    for inv in inventories:
        argv += ["-i", inv]
    if jobs is not None:
        argv += ["--forks", str(jobs)]
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "gpudoctor.doctor.gpudoctor_json", "ANSIBLE_COLLECTIONS_PATH": collections_path(),
           "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": os.path.join(work, "tmp")}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise BadInput(f"--hosts: cannot run {argv[0]}: {e}") from e
    try:
        doc = json.loads(p.stdout)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError:
        tail = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ["no output"])[-1]
        raise BadInput(f"--hosts {SCHEME}{pattern}: ansible-playbook failed (exit {p.returncode}): {tail}") from None
    return doc


def outcomes(doc: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Host names in Ansible's order, and each host's task result (the collection's
    gpudoctor_json callback)."""
    names, results = doc.get("hosts"), doc.get("results")
    if doc.get("format") != "gpudoctor.ansible" or not isinstance(names, list) or not isinstance(results, dict):
        raise DoctorError("--hosts: unexpected output from the gpudoctor_json callback (is the collection current?)")
    return [str(n) for n in names], {str(k): v for k, v in results.items() if isinstance(v, dict)}


def _safe(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "host"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}-{i}"
    taken.add(out)
    return out


def cmd_check_hosts(args: argparse.Namespace,
                    judge: Callable[[list[tuple[str, str]], list[HostOutcome], list[str]], int]) -> int:
    """Record the hosts over Ansible and hand their snapshots to `judge` (while they exist)."""
    pattern = parse_pattern(args.hosts)
    if args.jobs is not None and args.jobs < 1:
        raise BadInput(f"--jobs {args.jobs}: must be at least 1")
    if args.keep:
        if os.path.exists(args.keep) and not os.path.isdir(args.keep):
            raise BadInput(f"--keep {args.keep}: not a folder")
        os.makedirs(args.keep, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpudoctor-hosts-") as work:
        doc = run_ansible(pattern, args.inventory or [], args.jobs, not args.no_redact, work)
        names, results = outcomes(doc)
        if not names:
            raise BadInput(f"--hosts {SCHEME}{pattern}: no host matched in the inventory")
        dest = args.keep or work
        items: list[tuple[str, str]] = []
        pre: list[HostOutcome] = []
        taken: set[str] = set()
        for name in names:
            r = results.get(name)
            if r is None:
                pre.append(HostOutcome(name, "error", "Ansible returned no result for this host"))
            elif r.get("unreachable"):
                pre.append(HostOutcome(name, "unreachable", str(r.get("msg", "unreachable")).strip()))
            elif r.get("failed") or "snapshot_b64" not in r:
                pre.append(HostOutcome(name, "error", f"recording failed: {str(r.get('msg', 'no snapshot returned')).strip()}"))
            else:
                try:
                    data = base64.b64decode(r["snapshot_b64"], validate=True)
                except (binascii.Error, ValueError, TypeError):
                    pre.append(HostOutcome(name, "error", "the module returned a snapshot that is not base64"))
                    continue
                if len(data) > MAX_SNAPSHOT:
                    pre.append(HostOutcome(name, "error", f"snapshot larger than {MAX_SNAPSHOT} bytes, not judged"))
                    continue
                path = os.path.join(dest, _safe(name, taken) + ".tar.gz")
                if os.path.lexists(path):
                    raise BadInput(f"--keep {args.keep}: {path} already exists; choose an empty folder (nothing was overwritten)")
                with open(path, "xb") as f:
                    f.write(data)
                items.append((name, path))
        if args.keep:
            print(f"gpudoctor: {len(items)} snapshot(s) kept in {args.keep}", file=sys.stderr)
        return judge(items, pre, names)
