"""`check --nfd PATH`: a node-feature-discovery local feature file for this node.

Format (NFD's "local" feature source, files in /etc/kubernetes/node-feature-discovery/features.d/,
read by nfd-worker: source/local/local.go): one `key=value` line per label, `#` comment lines,
directives `# +<name>=<value>`; `# +expiry-time=<RFC3339>` drops the lines after it once that time
has passed, so the labels vanish if the checker stops running. Files over 64 KiB are refused and
dot files ignored (hence the temporary file beside the target, renamed into place).

Labels (Kubernetes label syntax: a DNS-subdomain prefix, a name of at most 63 characters
[A-Za-z0-9] at both ends and [-_.A-Za-z0-9] between, a value of the same shape or empty):

    gpudoctor.io/passthrough-ready   true | false | unknown
    gpudoctor.io/iommu               on | off | unknown        (iommu.active)
    gpudoctor.io/gpu-<addr>-viable   true | false | unknown    (<addr> with ':' as '-')

Readiness from the verdicts: a failing (or erroring) check makes it false; otherwise an unknown
one makes it unknown; it is true only when every check that applies passed or warned and the node
has a GPU to hand over.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

PREFIX = "gpudoctor.io/"
DEFAULT_TTL_S = 3600
MAX_FILE = 65536  # NFD's MaxFeatureFileSize

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def gpu_label(addr: str) -> str:
    """`gpudoctor.io/gpu-0000-01-00.0-viable` for 0000:01:00.0 (':' is not allowed in a label name)."""
    name = "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "-", addr) + "-viable"
    return PREFIX + name


def _verdict(statuses: list[str]) -> str:
    if any(s in ("fail", "error") for s in statuses):
        return "false"
    if any(s == "unknown" for s in statuses):
        return "unknown"
    return "true"


def labels(doc: dict[str, Any]) -> dict[str, str]:
    """The labels of one `gpudoctor.check` document."""
    results = doc["results"]
    host_wide = [r["status"] for r in results if not r.get("subject")]
    out: dict[str, str] = {}
    ready = _verdict([r["status"] for r in results])
    if ready == "true" and not doc.get("gpus"):
        ready = "false"  # nothing to hand over: not ready for passthrough, whatever else holds
    out[PREFIX + "passthrough-ready"] = ready
    iommu = [r["status"] for r in results if r["id"] == "iommu.active"]
    out[PREFIX + "iommu"] = {"pass": "on", "warn": "on", "fail": "off"}.get(iommu[0], "unknown") if iommu else "unknown"
    for addr in doc.get("gpus", []):
        mine = [r["status"] for r in results if r.get("subject") == addr]
        out[gpu_label(addr)] = _verdict(host_wide + mine)
    return out


def valid_label(key: str, value: str) -> bool:
    """Kubernetes label rules (what nfd-master validates before labelling a node)."""
    prefix, sep, name = key.rpartition("/")
    if not sep or not prefix or len(prefix) > 253:
        return False
    if not all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", p) for p in prefix.split(".")):
        return False
    return bool(_NAME.match(name)) and len(value) <= 63 and bool(_VALUE.match(value))


def nfd_features(doc: dict[str, Any], now: _dt.datetime | None = None, ttl_s: int = DEFAULT_TTL_S) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    expiry = (now + _dt.timedelta(seconds=ttl_s)).astimezone(_dt.timezone.utc).replace(microsecond=0)
    lines = [
        f"# +expiry-time={expiry.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"# written by gpudoctor {doc.get('gpudoctor', '')} `check --nfd`; rewrite it before the expiry time",
    ]
    for k, v in labels(doc).items():
        if not valid_label(k, v):  # an address no label can carry: say so rather than publish a bad label
            lines.append(f"# skipped (not a valid label): {k}={v}")
            continue
        lines.append(f"{k}={v}")
    text = "\n".join(lines) + "\n"
    assert len(text.encode()) <= MAX_FILE  # a handful of labels; NFD refuses bigger files
    return text
