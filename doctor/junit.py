"""JUnit XML for CI dashboards (GitLab, Jenkins, Azure): a pure function of `gpudoctor.check` documents.

One <testsuite> per host (its name: the snapshot path or inventory alias; `hostname`: the checked
host's own name as the document has it, redacted unless --no-redact), one <testcase> per result
(`classname` the check's area, the id's prefix before the dot; the name the check id, with the GPU
in brackets for per-GPU checks). PASS passes; WARN passes with the warning in <system-out>;
UNKNOWN and N/A are <skipped> with the reason; FAIL is a <failure> carrying the evidence and the
fix; ERROR is an <error>. A host that could not be judged (unreachable, a bad snapshot) is one
<error> testcase `host.reachable` / `host.recorded`, so it is never dropped from a dashboard.
The shape follows the Jenkins/Ant JUnit format (tests/data/junit.xsd says which source).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from doctor import __version__

# XML 1.0 forbids most control characters; a hostile log line must not make the file unreadable
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(s: object) -> str:
    return _BAD_XML.sub("\ufffd", str(s))


def _failure_text(r: dict[str, Any]) -> str:
    lines = [r["summary"], *r["messages"]]
    if r["evidence"]:
        lines.append("evidence:")
        lines += [f"  {e['source']}: {e['value']}" for e in r["evidence"]]
    rem = r.get("remedy")
    if rem:
        lines.append(f"fix: {rem['text']}")
        lines += [f"  {s}" for s in rem["steps"]]
    return "\n".join(lines)


def _testcase(suite: ET.Element, r: dict[str, Any]) -> str:
    name = r["id"] + (f"[{r['subject']}]" if r.get("subject") else "")
    tc = ET.SubElement(suite, "testcase", name=_clean(name), classname=_clean(r["id"].split(".", 1)[0]),
                       time=f"{float(r.get('duration_s') or 0):.6f}")
    st = r["status"]
    if st == "fail":
        el = ET.SubElement(tc, "failure", message=_clean(r["summary"]), type="FAIL")
        el.text = _clean(_failure_text(r))
    elif st == "error":
        el = ET.SubElement(tc, "error", message=_clean(r["summary"]), type="ERROR")
        el.text = _clean("\n".join([r["summary"], *r["messages"]]))
    elif st in ("unknown", "not_applicable"):
        word = "UNKNOWN" if st == "unknown" else "N/A"
        el = ET.SubElement(tc, "skipped", message=_clean(f"{word}: {r['summary']}"), type=word)
        el.text = _clean("\n".join([r["summary"], *r["messages"]]))
    elif st == "warn":
        out = ET.SubElement(tc, "system-out")
        out.text = _clean("\n".join([f"WARN: {r['summary']}", *r["messages"]]))
    return st


def _host_suite(root: ET.Element, host: Any) -> dict[str, int]:
    doc = host.check
    hostname = (doc or {}).get("host", {}).get("hostname") or host.name
    suite = ET.SubElement(root, "testsuite", name=_clean(host.name), hostname=_clean(hostname))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="gpudoctor", value=__version__)
    ET.SubElement(props, "property", name="state", value=host.state)
    if doc is not None:
        ET.SubElement(props, "property", name="source", value=_clean(doc["source"].get("location", "")))
    n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_s = 0.0
    if doc is None:
        case = "host.reachable" if host.state == "unreachable" else "host.recorded"
        tc = ET.SubElement(suite, "testcase", name=case, classname="host", time="0.000000")
        el = ET.SubElement(tc, "error", message=_clean(f"{host.state}: {host.reason}"), type=host.state.upper())
        el.text = _clean(host.reason)
        n["tests"], n["errors"] = 1, 1
    else:
        for r in doc["results"]:
            st = _testcase(suite, r)
            time_s += float(r.get("duration_s") or 0)
            n["tests"] += 1
            n["failures"] += st == "fail"
            n["errors"] += st == "error"
            n["skipped"] += st in ("unknown", "not_applicable")
    for k, v in n.items():
        suite.set(k, str(v))
    suite.set("time", f"{time_s:.6f}")
    return n


def junit_xml(hosts: Iterable[Any]) -> bytes:
    """JUnit XML for HostOutcome-like objects (name, state, reason, check document)."""
    root = ET.Element("testsuites", name="gpudoctor")
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for h in hosts:
        for k, v in _host_suite(root, h).items():
            total[k] += v
    for k in ("tests", "failures", "errors"):
        root.set(k, str(total[k]))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
