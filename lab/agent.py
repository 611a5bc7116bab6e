"""Lab agent: runs inside the guest (chrooted into the overlaid host root), stdlib only.

Protocol over the writable 9p share (argv[1], /run/gpudoctor-lab in the guest):
  jobs/<id>.json      written by the host (tmp file + rename):
                      {"argv": [...], "timeout": s, "env": {...}, "cwd": ..., "input": str|null}
  results/<id>.out    stdout of the command, written while it runs
  results/<id>.err    stderr
  results/<id>.json   {"rc": int, "timed_out": bool, "duration": s, "error": str|null}, written last
  ready.json          written once at start: {"uname": ..., "uptime": ...}
A job {"argv": ["@exit"]} stops the agent (the guest then powers off).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def _feed(pipe, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError):
        pass


def run_job(share: str, jid: str, job: dict) -> dict:
    res = os.path.join(share, "results")
    out_path = os.path.join(res, jid + ".out")
    err_path = os.path.join(res, jid + ".err")
    env = dict(os.environ)
    env.update(job.get("env") or {})
    t0 = time.monotonic()
    timed_out = False
    rc = None
    error = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            p = subprocess.Popen(
                job["argv"],
                stdin=subprocess.PIPE if job.get("input") is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=job.get("cwd") or "/",
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            return {"rc": 127, "timed_out": False, "duration": 0.0, "error": f"cannot start: {e}"}
        try:
            if job.get("input") is not None and p.stdin is not None:
                # In a thread: a command that never reads stdin must not block the timeout.
                threading.Thread(target=_feed, args=(p.stdin, job["input"].encode()), daemon=True).start()
            rc = p.wait(timeout=job.get("timeout") or 60)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = p.wait()
        finally:
            # Leftovers of the session (children that outlived the leader) are killed too,
            # unless the job asked to keep daemons it started.
            if not job.get("keep_children"):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    return {"rc": rc, "timed_out": timed_out, "duration": time.monotonic() - t0, "error": error}


def main() -> int:
    share = sys.argv[1]
    jobs = os.path.join(share, "jobs")
    os.makedirs(jobs, exist_ok=True)
    os.makedirs(os.path.join(share, "results"), exist_ok=True)
    # Reap children orphaned to us (we may be the child of PID 1, but be safe).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _write_json(
        os.path.join(share, "ready.json"),
        {"uname": " ".join(os.uname()), "uptime": _uptime(), "pid": os.getpid()},
    )
    print(f"LAB: agent ready uptime {_uptime():.1f}s", flush=True)
    while True:
        names = sorted(n for n in os.listdir(jobs) if n.endswith(".json"))
        if not names:
            time.sleep(0.05)
            continue
        for name in names:
            path = os.path.join(jobs, name)
            jid = name[:-5]
            try:
                with open(path) as f:
                    job = json.load(f)
            except (OSError, ValueError) as e:
                print(f"LAB: bad job {name}: {e}", flush=True)
                os.unlink(path)
                continue
            os.unlink(path)
            if job.get("argv") == ["@exit"]:
                _write_json(os.path.join(share, "results", jid + ".json"), {"rc": 0, "timed_out": False})
                return 0
            try:
                result = run_job(share, jid, job)
            except Exception as e:  # never let the agent die on one job
                result = {"rc": 125, "timed_out": False, "duration": 0.0, "error": repr(e)}
            _write_json(os.path.join(share, "results", jid + ".json"), result)


if __name__ == "__main__":
    sys.exit(main())
