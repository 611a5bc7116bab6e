# -*- coding: utf-8 -*-
"""Stdout callback for `gpudoctor check --hosts`: one JSON document at the end of the play,
{"format": "gpudoctor.ansible", "version": 1, "hosts": [names in order], "results": {name: result}}
(ansible-core ships no JSON stdout callback of its own; ansible.posix.json is a separate collection)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: gpudoctor_json
type: stdout
short_description: The results of gpudoctor_record tasks as one JSON document
description:
  - Used by C(gpudoctor check --hosts); prints every host's last task result, unreachable ones included.
author:
  - gpudoctor contributors
"""

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "gpudoctor.doctor.gpudoctor_json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._order = []
        self._results = {}

    def _keep(self, result, **extra):
        name = result._host.get_name()
        if name not in self._order:
            self._order.append(name)
        res = dict(result._result)
        res.update(extra)
        self._results[name] = res

    def v2_runner_on_ok(self, result, **kwargs):
        self._keep(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._keep(result, failed=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._keep(result, unreachable=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._keep(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        for name in sorted(stats.processed):
            if name not in self._order:
                self._order.append(name)
        self._display.display(json.dumps({"format": "gpudoctor.ansible", "version": 1,
                                          "hosts": self._order, "results": self._results}))
