# -*- coding: utf-8 -*-
"""Action plugin (runs on the controller): run the gpudoctor_record module on the target, then,
when the task asks for verdicts (fail_on: fail | warn), judge the snapshot here with gpudoctor's
own checks, return the gpudoctor.check document as `verdicts` and fail the task accordingly."""

from __future__ import annotations

import base64
import os
import tempfile

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("redact", "provenance", "fail_on"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        fail_on = self._task.args.get("fail_on", "never")
        result.update(self._execute_module(module_name="gpudoctor.doctor.gpudoctor_record",
                                           module_args=dict(self._task.args), task_vars=task_vars))
        result["changed"] = False
        if result.get("failed") or result.get("unreachable") or fail_on == "never":
            return result
        try:
            from doctor.facts import HostFacts
            from doctor.render import to_json
            from doctor.runner import run_checks
            from doctor.snapshot import SnapshotHost
        except ImportError as e:
            result.update(failed=True, msg="fail_on: %s needs gpudoctor installed on the controller "
                                           "(pip install gpudoctor): %s" % (fail_on, e))
            return result
        with tempfile.TemporaryDirectory(prefix="gpudoctor-verdicts-") as d:
            path = os.path.join(d, "snapshot.tar.gz")
            with open(path, "wb") as f:
                f.write(base64.b64decode(result["snapshot_b64"]))
            host = SnapshotHost(path)
            try:
                doc = to_json(run_checks(HostFacts(host), host.source_info()),
                              redact=bool(self._task.args.get("redact", True)))
            finally:
                host.close()
        result["verdicts"] = doc
        bad = {"fail": ("fail", "error"), "warn": ("fail", "error", "warn")}[fail_on]
        hits = [r["id"] for r in doc["results"] if r["status"] in bad]
        if hits:
            result.update(failed=True, msg="gpudoctor: %s on this host (fail_on: %s)" % (", ".join(sorted(set(hits))), fail_on))
        return result
