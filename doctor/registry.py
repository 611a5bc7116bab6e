"""The one place that lists the checks and the fixes, and pairs them.

Check modules register their checks through `doctor.checkapi`; this module imports them (an explicit
list, no discovery), puts them in the report's order and gives each the fix family that answers it.
Nothing else in `doctor/` imports `checks/` or `remediations/`: it asks here."""

from __future__ import annotations

import importlib
from types import ModuleType

from doctor import datarecord
from doctor.checkapi import REGISTRY, CheckFunc, CheckSpec, Context

__all__ = ["CHECK_MODULES", "FIXES", "MANUAL", "ORDER", "CheckSpec", "Context", "check_func", "check_table", "load_checks", "remediation"]

# one module per id prefix: checks/check_<prefix>.py holds the checks <prefix>.*
CHECK_MODULES = ("cpu", "kvm", "firmware", "cmdline", "iommu", "gpu", "vfio", "boot", "config", "vm", "guest")

# the report's order: the steps of the notes first, then what comes after them (forecasts), then VMs
ORDER = (
    "cpu.virtualization", "kvm.available",
    "firmware.iommu_table", "cmdline.iommu_enabled", "cmdline.iommu_passthrough", "iommu.active", "iommu.groups_present",
    "gpu.candidate", "gpu.group_isolated",
    "vfio.ids_configured", "vfio.early_load", "vfio.group_viable", "vfio.binding_persistent",
    "iommu.interrupt_remapping", "vfio.ids_unique_to_card", "gpu.group_safe", "boot.config_in_effect",
    "boot.initramfs_current", "gpu.framebuffer_free", "gpu.reset_capable", "config.no_drift",
    "boot.secure_boot_modules", "gpu.rom_readable", "cmdline.iommu_args_meaningful",
    "vm.memory_pinnable", "vm.hostdevs_cover_unit", "vm.machine_q35", "vm.kvm_hidden", "vm.not_wedged",
    "vm.guest_sees_gpu", "guest.serial_getty",
)

# check id -> the fix families (remediations/<family>.py, or a gpudoctor command) that answer it. The
# remedy a check gives carries typed parameters of one of them (doctor.model.FixParams); the fixer plans
# from those parameters and acts only on a family this table pairs with the check.
FIXES: dict[str, tuple[str, ...]] = {
    "cmdline.iommu_enabled": ("kernel_cmdline",),
    "cmdline.iommu_passthrough": ("kernel_cmdline",),
    "cmdline.iommu_args_meaningful": ("kernel_cmdline",),
    "boot.config_in_effect": ("kernel_cmdline",),
    "gpu.framebuffer_free": ("kernel_cmdline",),
    "iommu.interrupt_remapping": ("kernel_cmdline",),
    "vfio.ids_configured": ("vfio_conf",),
    "vfio.binding_persistent": ("vfio_conf", "early_load"),  # both make the binding at boot
    "vfio.ids_unique_to_card": ("vfio_conf", "pci_bind"),  # by address at boot, or bound now
    "vfio.early_load": ("early_load",),
    "boot.initramfs_current": ("early_load",),
    "vfio.group_viable": ("pci_bind",),
    "vm.not_wedged": ("vm_cleanup",),
    "guest.serial_getty": ("guest_getty",),
}

# checks no automatic fix can answer, with the reason `fix` gives
MANUAL: dict[str, str] = {
    "gpu.group_isolated": "no automatic fix: the group comes from the hardware topology and ACS",
}

def load_checks() -> dict[str, CheckSpec]:
    """The checks, in the report's order, each with its fix family."""
    for m in CHECK_MODULES:
        importlib.import_module(f"checks.check_{m}")
    if set(REGISTRY) != set(ORDER):
        raise RuntimeError(f"doctor.registry.ORDER and the registered checks differ: {sorted(set(REGISTRY) ^ set(ORDER))}")
    return {cid: datarecord.replace(REGISTRY[cid], fix_id="/".join(FIXES.get(cid, ())), order=i) for i, cid in enumerate(ORDER)}


def check_func(check_id: str) -> CheckFunc:
    return load_checks()[check_id].func


def remediation(family: str) -> ModuleType:
    """The module of a fix family (remediations/<family>.py)."""
    if family not in {f for fs in FIXES.values() for f in fs} - {"vm_cleanup"} | {"vfio_override"}:
        raise KeyError(family)
    return importlib.import_module(f"remediations.{family}")


def check_table(markdown: bool = False) -> str:
    """`gpudoctor list`: every check with its severity, scope and fix; `--markdown` is the README's table."""
    specs = list(load_checks().values())
    rows = [(s.id, s.severity.value, "per GPU" if s.per_gpu else "host", s.fix_id or MANUAL.get(s.id, "") and "manual",
             s.title) for s in specs]
    if markdown:
        head = ["| id | severity | scope | fix | what it establishes |", "| --- | --- | --- | --- | --- |"]
        return "\n".join(head + [f"| `{i}` | {sev} | {scope} | {f'`{fix}`' if fix else '-'} | {t} |"
                                  for i, sev, scope, fix, t in rows])
    w = max(len(r[0]) for r in rows) + 1
    return "\n".join(f"{i:<{w}} {sev:<8} {scope:<8} {t}" + (f" (fix: {fix})" if fix else "") for i, sev, scope, fix, t in rows)
