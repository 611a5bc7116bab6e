#!/usr/bin/python3
"""gpudoctor lab runner: mount the 9p share, run job.json, write results, power off/reboot.

This file is copied verbatim into the disk image (lab/disk.py: /usr/local/sbin/gpudoctor-lab-runner,
started by the oneshot unit gpudoctor-lab.service at each boot) and run there by Debian's python3.
So it imports nothing but the standard library (not the ``lab`` package), and its bytes are part
of the image's cache key (lab.disk.image_key): editing it means rebuilding the images.
lab/disk.py imports its constants (SHARE, SRC, MARK) so the host and the guest agree on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from typing import Any

SHARE = "/run/gpudoctor-lab"  # the writable 9p share (mount tag labshare): job.json in, results out
SRC = "/run/gpudoctor-src"  # the checkout under test, read-only (mount tag gpsrc)
MARK = "GPUDOCTOR-LAB"  # prefix of the serial console lines the host reads (timings, hangs)


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def mark(msg: str) -> None:
    try:
        with open("/dev/ttyS0", "w") as f:
            f.write(f"\n{MARK} {msg} uptime={uptime():.1f}\n")
    except OSError:
        pass


def sh(cmd: list[str] | str, timeout: float = 60) -> str:
    try:
        return subprocess.run(
            cmd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=timeout, errors="replace"
        ).stdout
    except Exception as e:
        return f"(failed: {e})"


def mount(tag: str, where: str, ro: bool = False) -> bool:
    os.makedirs(where, exist_ok=True)
    opts = "trans=virtio,version=9p2000.L,msize=262144,cache=none" + (",ro" if ro else "")
    for _ in range(50):
        if subprocess.run(["mount", "-t", "9p", "-o", opts, tag, where]).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def write_json(path: str, data: object, indent: int | None = None) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=indent)


def truth(files: list[str]) -> dict[str, Any]:
    """Ground truth read in the guest itself, independent of gpudoctor."""
    t: dict[str, Any] = {"uptime": uptime()}
    with open("/proc/cmdline") as f:
        t["cmdline"] = f.read().strip()
    t["uname_r"] = os.uname().release
    drivers: dict[str, str | None] = {}
    for a in sorted(os.listdir("/sys/bus/pci/devices")):
        d = f"/sys/bus/pci/devices/{a}"
        drivers[a] = os.path.basename(os.readlink(d + "/driver")) if os.path.exists(d + "/driver") else None
    t["drivers"] = drivers
    groups: dict[str, list[str]] = {}
    base = "/sys/kernel/iommu_groups"
    if os.path.isdir(base):
        for g in os.listdir(base):
            groups[g] = sorted(os.listdir(f"{base}/{g}/devices"))
    t["iommu_groups"] = groups
    t["dmesg"] = sh(["dmesg"])
    t["lsmod"] = sh(["lsmod"])
    t["root_mount"] = sh(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "/"]).strip()
    hashes: dict[str, str | None] = {}
    for p in files:
        try:
            with open(p, "rb") as fb:
                hashes[p] = hashlib.sha256(fb.read()).hexdigest()
        except OSError:
            hashes[p] = None
    t["files"] = hashes
    t["boot_files"] = sorted(os.listdir("/boot"))
    t["failed_units"] = sh(["systemctl", "--failed", "--no-legend", "--plain"]).strip()
    t["initrd_modules"] = ""
    return t


def run_step(st: dict[str, Any], out: str, i: int, env: dict[str, str]) -> dict[str, Any]:
    """One step of the job: ``/bin/sh -c st["sh"]`` in its own session, killed at its timeout."""
    t0 = time.monotonic()
    res: dict[str, Any] = {"name": st.get("name"), "timed_out": False}
    with open(f"{out}/{i}.out", "w") as fo, open(f"{out}/{i}.err", "w") as fe:
        try:
            p = subprocess.Popen(
                ["/bin/sh", "-c", st["sh"]],
                stdout=fo,
                stderr=fe,
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                res["rc"] = p.wait(timeout=st.get("timeout", 300))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                res["rc"] = p.wait()
                res["timed_out"] = True
        except Exception as e:
            res["rc"] = -1
            res["error"] = repr(e)
    res["duration"] = time.monotonic() - t0
    return res


def main() -> None:
    if not mount("labshare", SHARE):
        mark("NOSHARE")
        return
    mount("gpsrc", SRC, ro=True)
    jp = f"{SHARE}/job.json"
    if not os.path.exists(jp):
        mark("NOJOB")
        return
    with open(jp) as f:
        job = json.load(f)
    boot = job["boot"]
    out = f"{SHARE}/results/{boot}"
    os.makedirs(out, exist_ok=True)
    os.rename(jp, f"{SHARE}/job.taken.{boot}.json")
    mark(f"READY boot={boot}")
    subprocess.run(["udevadm", "settle", "--timeout=60"])
    if job.get("truth_before", True):
        write_json(f"{out}/truth.json", truth(job.get("files", [])), indent=1)
    env = dict(
        os.environ,
        PYTHONPATH=SRC,
        PYTHONDONTWRITEBYTECODE="1",
        LC_ALL="C.UTF-8",
        TERM="dumb",
        COLUMNS="200",
        PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    env.update(job.get("env", {}))
    for i, st in enumerate(job.get("steps", [])):
        mark(f"STEP {i} START {st.get('name', '')}")
        res = run_step(st, out, i, env)
        write_json(f"{out}/{i}.json", res)
        mark(f"STEP {i} END rc={res['rc']} duration={res['duration']:.1f}")
        if res["rc"] != 0 and st.get("stop_on_error", True):
            break
    if job.get("truth_after"):
        write_json(f"{out}/truth_after.json", truth(job.get("files", [])), indent=1)
    then = job.get("then", "poweroff")
    write_json(f"{out}/done.json", {"uptime": uptime(), "then": then})
    os.sync()
    mark(f"DONE boot={boot} then={then}")
    if then in ("poweroff", "reboot"):
        subprocess.run(["systemctl", "--no-block", then])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        mark(f"RUNNER-ERROR {e!r}")
        raise
