"""check --nfd PATH: a node-feature-discovery local feature file, checked against NFD's documented
format (features.d: `key=value` lines, `# +expiry-time=<RFC3339>`, 64 KiB, Kubernetes label syntax)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from doctor.cli import main
from doctor.nfd import gpu_label, labels, nfd_features

REPO = Path(__file__).resolve().parent.parent
PARTIAL = str(REPO / "fixtures" / "lab-intel-partial")
DEV = str(REPO / "fixtures" / "dev-machine")

# Kubernetes label syntax (k8s.io/apimachinery validation: IsQualifiedName, IsValidLabelValue)
LABEL_KEY = re.compile(r"^(?P<prefix>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/"
                       r"(?P<name>[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
KNOWN_DIRECTIVES = {"expiry-time", "no-label", "no-feature"}


def parse_like_nfd(text: str, now: dt.datetime) -> tuple[dict[str, str], dt.datetime | None]:
    """NFD's parseFeatureFile rules, strictly: trimmed lines; '#' lines are comments, '# +' ones
    directives (an unknown one or a bad expiry time is an error); after an expiry-time in the past,
    lines are ignored; `key=value` (a bare key means true)."""
    assert len(text.encode()) <= 65536
    expiry: dt.datetime | None = None
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("# +"):
                key, sep, value = line[3:].partition("=")
                assert key in KNOWN_DIRECTIVES, f"unknown directive {line!r}"
                if key == "expiry-time":
                    assert sep, line
                    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value.strip()), value
                    expiry = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            continue
        if expiry is not None and expiry < now:
            continue
        k, _, v = line.partition("=")
        out[k] = v if _ else "true"
    return out, expiry


def test_file_follows_nfds_format_and_label_syntax(tmp_path: Path) -> None:
    out = tmp_path / "gpudoctor"
    assert main(["check", "--snapshot", PARTIAL, "--nfd", str(out), "--nfd-ttl", "600"]) == 1
    text = out.read_text()
    assert text.splitlines()[0].startswith("# +expiry-time=")  # before every label it governs
    now = dt.datetime.now(dt.timezone.utc)
    got, expiry = parse_like_nfd(text, now)
    assert expiry is not None and dt.timedelta(seconds=590) < expiry - now <= dt.timedelta(seconds=601)
    for k, v in got.items():
        m = LABEL_KEY.match(k)
        assert m and len(m.group("name")) <= 63 and len(m.group("prefix")) <= 253, k
        assert LABEL_VALUE.match(v) and len(v) <= 63, v
    assert got == {"gpudoctor.io/passthrough-ready": "false", "gpudoctor.io/iommu": "on",
                   "gpudoctor.io/gpu-0000-01-00.0-viable": "false"}
    # once the checker stops, the labels vanish
    assert parse_like_nfd(text, now + dt.timedelta(seconds=700))[0] == {}


def test_no_iommu_and_no_gpu(tmp_path: Path) -> None:
    out = tmp_path / "f"
    main(["check", "--snapshot", DEV, "--nfd", str(out)])
    got, _ = parse_like_nfd(out.read_text(), dt.datetime.now(dt.timezone.utc))
    assert got == {"gpudoctor.io/passthrough-ready": "false", "gpudoctor.io/iommu": "off"}


def result(cid: str, status: str, subject: str | None = None) -> dict[str, object]:
    return {"id": cid, "status": status, "subject": subject}


def test_readiness_is_true_only_when_nothing_failed_or_is_unknown() -> None:
    gpu = "0000:41:00.0"
    ok = {"gpus": [gpu], "results": [result("iommu.active", "pass"), result("vfio.group_viable", "pass", gpu),
                                     result("cmdline.iommu_passthrough", "warn")]}
    assert labels(ok) == {"gpudoctor.io/passthrough-ready": "true", "gpudoctor.io/iommu": "on",
                          "gpudoctor.io/gpu-0000-41-00.0-viable": "true"}
    unk = {**ok, "results": [*ok["results"], result("boot.config_in_effect", "unknown")]}
    assert labels(unk)["gpudoctor.io/passthrough-ready"] == "unknown"
    assert labels(unk)[gpu_label(gpu)] == "unknown"
    two = {"gpus": [gpu, "0000:42:00.0"], "results": [result("iommu.active", "pass"),
                                                       result("vfio.group_viable", "fail", "0000:42:00.0")]}
    lab = labels(two)
    assert lab[gpu_label(gpu)] == "true" and lab[gpu_label("0000:42:00.0")] == "false"
    assert lab["gpudoctor.io/passthrough-ready"] == "false"


def test_expiry_is_rfc3339_utc() -> None:
    doc = {"gpus": [], "results": []}
    text = nfd_features(doc, now=dt.datetime(2030, 7, 29, 11, 22, 33, tzinfo=dt.timezone(dt.timedelta(hours=2))), ttl_s=60)
    assert text.splitlines()[0] == "# +expiry-time=2030-07-29T09:23:33Z"


@pytest.mark.parametrize("args, needle", [
    (["--nfd-ttl", "0"], "--nfd-ttl 0"),
    (["--snapshot", PARTIAL, DEV], "--nfd describes one node"),
])
def test_bad_nfd_options_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    argv = ["check", "--nfd", str(tmp_path / "f"), *args]
    if "--snapshot" not in args:
        argv += ["--snapshot", PARTIAL]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
