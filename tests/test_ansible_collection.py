"""The Ansible collection (ansible/ansible_collections/gpudoctor/doctor): ansible-galaxy accepts it
from the folder and as a built tarball, and its vendored recorder is doctor/'s, byte for byte
(apart from the import path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLL = REPO / "ansible" / "ansible_collections" / "gpudoctor" / "doctor"
GALAXY = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")

sys.path.insert(0, str(REPO / "ansible"))
import vendor  # noqa: E402


def test_vendored_recorder_is_in_sync_with_doctor() -> None:
    assert vendor.stale() == [], "run: python ansible/vendor.py"


def test_vendored_copy_never_imports_gpudoctor_itself() -> None:
    for f in (COLL / "plugins" / "module_utils" / "gpudoctor_vendor").rglob("*.py"):
        for line in f.read_text().splitlines():
            assert not line.strip().startswith(("from doctor", "import doctor")), (f.name, line)


def galaxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GALAXY, *args], capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1"})


def test_galaxy_installs_from_the_folder_and_from_a_built_tarball(tmp_path: Path) -> None:
    p = galaxy("collection", "install", str(COLL), "-p", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "a/ansible_collections/gpudoctor/doctor/plugins/modules/gpudoctor_record.py").is_file()
    p = galaxy("collection", "build", str(COLL), "--output-path", str(tmp_path / "dist"))
    assert p.returncode == 0, p.stderr
    tarball = tmp_path / "dist" / "gpudoctor-doctor-0.1.0.tar.gz"
    assert tarball.is_file()
    p = galaxy("collection", "install", str(tarball), "-p", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    root = tmp_path / "b/ansible_collections/gpudoctor/doctor/plugins"
    for rel in ("modules/gpudoctor_record.py", "action/gpudoctor_record.py", "callback/gpudoctor_json.py",
                "module_utils/gpudoctor_vendor/snapshot.py"):
        assert (root / rel).is_file(), rel


def test_every_vendored_import_is_vendored_too() -> None:
    """If doctor/snapshot.py starts importing another doctor module, ansible/vendor.py's MODULES must
    grow with it: the module would fail on a target otherwise."""
    import re

    pkg = re.escape(vendor.PACKAGE)
    root = COLL / "plugins" / "module_utils" / "gpudoctor_vendor"
    have = {str(f.relative_to(root).with_suffix("")) for f in root.rglob("*.py")}
    for f in root.rglob("*.py"):
        for m in re.finditer(rf"from {pkg}(?:\.([\w.]+))? import", f.read_text()):
            rel = (m.group(1) or "").replace(".", "/")
            assert (rel or "__init__") in have or f"{rel}/__init__" in have, (f.name, m.group(0))
