"""The firmware's IOMMU table (ACPI DMAR for Intel VT-d, IVRS for AMD-Vi)."""

from __future__ import annotations

from checks.common import try_fact, vendor_of
from doctor.checkapi import Context, check
from doctor.model import Evidence, Remedy, Status, Verdict, verdict
from doctor.passthrough import iommu_vendor


@check("firmware.iommu_table", "Firmware exposes an IOMMU (ACPI DMAR / IVRS)")
def firmware_iommu_table(ctx: Context) -> Verdict:
    """VT-d / AMD-Vi on in firmware: the ACPI DMAR (Intel) or IVRS (AMD) table exists."""
    tables = ctx.facts.acpi_tables()
    vendor = vendor_of(ctx.facts)
    found = [t for t in ("DMAR", "IVRS", "IORT") if t in tables]
    ev = [Evidence(ctx.facts.where("acpi_tables", "/sys/firmware/acpi/tables"), " ".join(sorted(t for t in tables if t.isupper())) or "(no tables)")]
    if found:
        note = iommu_vendor(ctx.facts).disagreement
        return verdict(Status.PASS, f"ACPI {found[0]} table present: the firmware describes an IOMMU", ev, [note] if note else [])
    cpu = try_fact(ctx.facts.cpu)
    setting = {"intel": "Intel VT-d ('VT for Directed I/O')", "amd": "AMD-Vi / IOMMU (and SVM)"}.get(vendor, "the IOMMU (VT-d / AMD-Vi)")
    table = "DMAR" if vendor == "intel" else "IVRS" if vendor == "amd" else "DMAR/IVRS"
    msgs = ["No kernel argument can help: without this table the kernel has no IOMMU to turn on."]
    if cpu is not None and "hypervisor" in cpu.flags:
        # a VM guest: its "firmware" is the hypervisor's, so the fix is on the hypervisor, not in a setup screen
        ev.append(Evidence("/proc/cpuinfo", "flags: hypervisor present (this host is itself a virtual machine)"))
        viommu = ("-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on" if vendor != "amd"
                  else "-machine q35,kernel-irqchip=split -device amd-iommu,intremap=on")
        return verdict(
            Status.FAIL,
            f"no ACPI {table} table: this VM guest's hypervisor gives it no virtual IOMMU",
            ev,
            msgs + ["A firmware setting inside this guest cannot add one: the hypervisor that runs it must."],
            Remedy("Give this VM a virtual IOMMU on the hypervisor that runs it (QEMU: a q35 machine, "
                   "a split irqchip and an emulated IOMMU with interrupt remapping; libvirt: <iommu model='intel'> "
                   "with <driver intremap='on' caching_mode='on'/> and <ioapic driver='qemu'/>), then boot it again; "
                   "or run gpudoctor on the bare-metal host that owns the GPU.",
                   (f"qemu-system-x86_64 {viommu} ...  # on the hypervisor",)),
        )
    return verdict(
        Status.FAIL,
        f"no ACPI {table} table: the IOMMU is off in firmware (or absent)",
        ev,
        msgs,
        Remedy(f"Enable {setting} in the firmware setup, save and power-cycle.", (f"firmware setup: enable {setting}",)),
    )
