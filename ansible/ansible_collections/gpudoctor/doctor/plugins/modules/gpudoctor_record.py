#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: record a redacted gpudoctor snapshot of this host and return it base64-encoded."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpudoctor_record
short_description: Record a gpudoctor snapshot (KVM GPU passthrough preflight) of the target
description:
  - Records what gpudoctor's checks read (sysfs, /proc, boot and module configuration, dmesg, lspci)
    into a snapshot archive, redacted by default, and returns it base64-encoded in C(snapshot_b64).
  - Needs only Python >= 3.10 on the target; the recorder is vendored in the collection's module_utils.
  - Never changes the target; C(changed) is always false. Run it with C(become) for a complete record.
  - With O(fail_on) other than C(never), the action plugin judges the snapshot on the controller
    (gpudoctor installed there) and returns C(verdicts).
options:
  redact:
    description: Replace hostnames, addresses, serials, UUIDs and machine ids by stable fake values.
    type: bool
    default: true
  provenance:
    description: Where this snapshot comes from (kept in the manifest).
    type: str
    default: ""
  fail_on:
    description: Fail the task when a check fails (V(fail)), fails or warns (V(warn)), or never (V(never)).
    type: str
    choices: [fail, warn, never]
    default: never
author:
  - gpudoctor contributors
"""

EXAMPLES = r"""
- name: Record each GPU host
  gpudoctor.doctor.gpudoctor_record:
  become: true
  register: rec

- name: Fail the play where passthrough is not ready
  gpudoctor.doctor.gpudoctor_record:
    fail_on: fail
  become: true
"""

RETURN = r"""
snapshot_b64:
  description: The snapshot archive (.tar.gz), base64-encoded; C(gpudoctor check --snapshot) reads it.
  returned: success
  type: str
size:
  description: Size of the archive in bytes.
  returned: success
  type: int
redactions:
  description: How many distinct values were replaced by redaction.
  returned: success
  type: int
gpudoctor_version:
  description: The version of the vendored recorder.
  returned: success
  type: str
verdicts:
  description: The gpudoctor.check document (only with fail_on other than never; computed on the controller).
  returned: when fail_on is not never
  type: dict
"""

import base64
import os
import shutil
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.gpudoctor.doctor.plugins.module_utils.gpudoctor_vendor import __version__
    from ansible_collections.gpudoctor.doctor.plugins.module_utils.gpudoctor_vendor.errors import DoctorError
    from ansible_collections.gpudoctor.doctor.plugins.module_utils.gpudoctor_vendor.snapshot import record
    IMPORT_ERROR = None
except (ImportError, SyntaxError, TypeError) as e:  # Python < 3.10 on the target
    IMPORT_ERROR = e


def main():
    module = AnsibleModule(
        argument_spec=dict(
            redact=dict(type="bool", default=True),
            provenance=dict(type="str", default=""),
            fail_on=dict(type="str", default="never", choices=["fail", "warn", "never"]),
        ),
        supports_check_mode=True,  # it only reads
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg="gpudoctor's recorder needs Python >= 3.10 on the target (this is %s): %s"
                         % (sys.version.split()[0], IMPORT_ERROR), changed=False)
    tmp = tempfile.mkdtemp(prefix="gpudoctor-record-")
    try:
        out = os.path.join(tmp, "snapshot.tar.gz")
        info = record(out, redact=module.params["redact"], provenance=module.params["provenance"])
        with open(out, "rb") as f:
            data = f.read()
    except DoctorError as e:
        module.fail_json(msg="gpudoctor record: %s" % e, changed=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    module.exit_json(changed=False, snapshot_b64=base64.b64encode(data).decode("ascii"), size=len(data),
                     redactions=info["redactions"], gpudoctor_version=__version__)


if __name__ == "__main__":
    main()
