"""Guest kernel cache: download, unpack, module ordering and the initramfs.

Layout of the cache directory (``$GPUDOCTOR_LAB_CACHE`` or ``~/.cache/gpudoctor-lab``)::

    kernel.json                 which kernel is current ({"kver": ..., "package": ...})
    kernels/<kver>/root/        the kernel package unpacked with ``dpkg -x`` (never installed)
    initrd-<hash>.gz            busybox initramfs with the modules, rebuilt when inputs change

Only :func:`fetch_kernel` touches the network (through apt); everything else is local.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import LabSetupError

HERE = Path(__file__).resolve().parent
SETUP_HINT = "run `sudo bash lab/setup.sh` (installs QEMU/busybox and caches the guest kernel)"

# Modules the guest needs, loaded with insmod in dependency order by the initramfs.
# Transport for the shared root first, then VFIO, then ordinary drivers for the card's functions
# so that "unbound" really means "on their usual host drivers".
ROOT_MODULES = [
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "vfio",
    "vfio_iommu_type1",
    "vfio_pci",
    "xhci_pci",
    "snd_hda_intel",
    "bochs",
    "e1000e",
    "kvm_amd",  # loads only where the CPU has svm (the AMD scenarios); fails harmlessly elsewhere
    "kvm_intel",  # never loads under TCG (no VMX), like a host with VT-x disabled
]
# Without these the guest cannot reach its root; the others are best effort.
REQUIRED_MODULES = {"9pnet_virtio", "9p", "overlay", "vfio", "vfio_iommu_type1", "vfio_pci"}


def cache_dir() -> Path:
    env = os.environ.get("GPUDOCTOR_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "gpudoctor-lab"


@dataclass(frozen=True)
class Kernel:
    kver: str
    root: Path  # the dpkg -x tree

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.kver}"

    @property
    def moddir(self) -> Path:
        for base in ("lib", "usr/lib"):
            p = self.root / base / "modules" / self.kver
            if p.is_dir():
                return p
        return self.root / "lib" / "modules" / self.kver


def _log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


# --------------------------------------------------------------------------- fetching


def _apt_kernel_packages() -> list[str]:
    """Names of the packages holding the distribution's current kernel image and modules."""
    override = os.environ.get("GPUDOCTOR_LAB_KERNEL_PKG")
    if override:
        return override.split()
    for meta, pattern in (
        ("linux-image-amd64", r"linux-image-\d[\w.+-]*-amd64"),  # Debian
        ("linux-image-generic", r"linux-image-(?:unsigned-)?\d[\w.+-]*-generic"),  # Ubuntu
    ):
        try:
            out = subprocess.run(
                ["apt-cache", "depends", meta], capture_output=True, text=True, timeout=60
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"Depends:\s*(" + pattern + r")\s*$", out, re.M)
        if m:
            pkg = m.group(1)
            if meta == "linux-image-generic":
                ver = pkg.split("linux-image-", 1)[1].replace("unsigned-", "")
                # Ubuntu keeps the modules (vfio, 9p, ...) in separate packages.
                return [pkg, f"linux-modules-{ver}", f"linux-modules-extra-{ver}"]
            return [pkg]
    raise LabSetupError(
        "cannot find the distribution kernel package (apt-cache depends linux-image-amd64 / "
        "linux-image-generic gave nothing); set GPUDOCTOR_LAB_KERNEL_PKG"
    )


def fetch_kernel(cache: Path | None = None, force: bool = False) -> Kernel:
    """apt-get download the kernel package(s) and dpkg -x them into the cache. Idempotent."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if not force:
        try:
            k = load_kernel(cache)
            _log(f"kernel {k.kver} already cached in {k.root}")
            return k
        except LabSetupError:
            pass
    pkgs = _apt_kernel_packages()
    _log(f"downloading {' '.join(pkgs)} with apt-get download (not installing)")
    with tempfile.TemporaryDirectory(prefix="lab-kdl-", dir=cache) as tmp:
        os.chmod(tmp, 0o777)  # apt's _apt sandbox user must be able to write here
        for pkg in pkgs:
            r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                if "extra" in pkg:
                    _log(f"  {pkg}: not available, continuing ({r.stderr.strip()[-200:]})")
                    continue
                raise LabSetupError(f"apt-get download {pkg} failed:\n{r.stderr}")
        debs = sorted(Path(tmp).glob("*.deb"))
        m = re.match(r"linux-image-(?:unsigned-)?(.+?)_", debs[0].name) if debs else None
        if not m:
            raise LabSetupError(f"no kernel .deb downloaded in {tmp}")
        kver = m.group(1)
        root = cache / "kernels" / kver / "root"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        for deb in debs:
            _log(f"  dpkg -x {deb.name}")
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    k = Kernel(kver, root)
    if not k.vmlinuz.exists():
        raise LabSetupError(f"{k.vmlinuz} missing after unpacking {pkgs}")
    os.chmod(k.vmlinuz, 0o644)  # Ubuntu ships it 0600
    _prepare_modules(k)
    (cache / "kernel.json").write_text(json.dumps({"kver": kver, "packages": pkgs}) + "\n")
    _log(f"kernel {kver} cached in {root}")
    return k


def _prepare_modules(k: Kernel) -> None:
    """Decompress .ko.xz/.ko.zst/.ko.gz next to themselves and run depmod on the tree."""
    n = 0
    for p in list(k.moddir.rglob("*.ko.*")):
        out = p.with_name(p.name.rsplit(".", 1)[0])
        if out.exists():
            continue
        if p.suffix == ".xz":
            out.write_bytes(lzma.decompress(p.read_bytes()))
        elif p.suffix == ".gz":
            out.write_bytes(gzip.decompress(p.read_bytes()))
        elif p.suffix == ".zst":
            subprocess.run(["zstd", "-q", "-d", "-f", str(p), "-o", str(out)], check=True)
        else:
            continue
        p.unlink()
        n += 1
    if n:
        _log(f"  decompressed {n} modules")
    depmod = shutil.which("depmod") or next(
        (c for c in ("/sbin/depmod", "/usr/sbin/depmod") if os.path.exists(c)), None
    )
    if depmod:
        subprocess.run([depmod, "-b", str(k.root), k.kver], check=False)
        # depmod -b writes under <root>/lib/modules; fine for both layouts.


def load_kernel(cache: Path | None = None) -> Kernel:
    cache = cache or cache_dir()
    meta = cache / "kernel.json"
    if not meta.exists():
        raise LabSetupError(f"no guest kernel cached in {cache} (kernel.json missing); {SETUP_HINT}")
    kver = json.loads(meta.read_text())["kver"]
    k = Kernel(kver, cache / "kernels" / kver / "root")
    if not k.vmlinuz.exists() or not k.moddir.is_dir():
        raise LabSetupError(f"guest kernel cache in {k.root} is incomplete; {SETUP_HINT}")
    return k


# --------------------------------------------------------------------------- modules


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _modinfo_field(data: bytes, field: str) -> str | None:
    m = re.search(rb"(?:^|\x00)" + field.encode() + rb"=([^\x00]*)\x00", data)
    return m.group(1).decode() if m else None


def module_load_order(k: Kernel, roots: list[str] = ROOT_MODULES) -> list[Path]:
    """The .ko files for *roots* and their dependencies, dependencies first."""
    index: dict[str, Path] = {}
    for p in (k.moddir / "kernel").rglob("*.ko"):
        index[_norm(p.name[:-3])] = p
    builtin = set()
    bf = k.moddir / "modules.builtin"
    if bf.exists():
        builtin = {_norm(Path(line.strip()).name[:-3]) for line in bf.read_text().splitlines() if line}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = _norm(name)
        if name in seen:
            return
        seen.add(name)
        path = index.get(name)
        if path is None:
            if name in builtin:
                return
            if chain[0] in REQUIRED_MODULES:
                raise LabSetupError(f"module {name} (needed by {' <- '.join(chain)}) not in {k.moddir}")
            _log(f"warning: module {name} not found, skipping")
            return
        deps = _modinfo_field(path.read_bytes(), "depends") or ""
        for d in filter(None, deps.split(",")):
            visit(d, chain + (d,))
        order.append(path)

    for r in roots:
        visit(r, (r,))
    return order


# --------------------------------------------------------------------------- initramfs


class _Cpio:
    """Minimal writer for the newc cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0)
        )
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _busybox() -> Path:
    for c in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(c):
            return Path(c)
    raise LabSetupError(f"busybox (static) not found; {SETUP_HINT}")


def build_initramfs(k: Kernel, cache: Path | None = None) -> Path:
    """Build (or reuse) the gzip'ed initramfs: busybox, /init, the modules in load order."""
    cache = cache or cache_dir()
    init = (HERE / "guest_init.sh").read_bytes()
    mods = module_load_order(k)
    bb = _busybox()
    h = hashlib.sha256(init)
    h.update(k.kver.encode())
    for p in mods + [bb]:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = cache / f"initrd-{h.hexdigest()[:16]}.gz"
    if out.exists():
        return out
    c = _Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot", "share", "tmp"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    c.file("bin/busybox", bb.read_bytes(), 0o755)
    c.file("init", init, 0o755)
    names = []
    for p in mods:
        c.file(f"modules/{p.name}", p.read_bytes())
        names.append(p.name)
    c.file("modules/order", ("\n".join(names) + "\n").encode())
    c.file("kver", (k.kver + "\n").encode())
    fd, tmp = tempfile.mkstemp(prefix=".initrd-", dir=cache)  # concurrent builders don't collide
    with os.fdopen(fd, "wb") as f:
        f.write(gzip.compress(c.finish(), compresslevel=1))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    for old in cache.glob("initrd-*.gz"):
        if old != out:
            old.unlink(missing_ok=True)
    return out
