"""Build Facts for unit tests without a host: every fact not given is unknown."""

from __future__ import annotations

from typing import Any

from doctor.facts import (
    BootConfig,
    CpuInfo,
    EarlyLoadConfig,
    Facts,
    KernelLog,
    ModuleState,
    PciDevice,
    parse_cmdline,
    parse_modprobe,
)

INTEL = CpuInfo("GenuineIntel", "Intel(R) Core(TM) i7-9700K CPU @ 3.60GHz", frozenset({"vmx", "fpu"}), 8)
AMD = CpuInfo("AuthenticAMD", "AMD Ryzen 9 5950X 16-Core Processor", frozenset({"svm", "fpu"}), 32)


class FakeFacts(Facts):
    source_kind = "test"

    def __init__(self, **given: Any) -> None:
        super().__init__()
        self.given = given

    def _get(self, name: str, fallback):  # type: ignore[no-untyped-def]
        if name in self.given:
            return self.given[name]
        return fallback()

    def kernel_release(self) -> str:
        return self._get("kernel_release", super().kernel_release)

    def os_release(self) -> dict[str, str]:
        return self._get("os_release", super().os_release)

    def cpu(self) -> CpuInfo:
        return self._get("cpu", super().cpu)

    def kvm_device(self) -> bool:
        return self._get("kvm_device", super().kvm_device)

    def acpi_tables(self) -> frozenset[str]:
        return self._get("acpi_tables", super().acpi_tables)

    def cmdline(self):  # type: ignore[no-untyped-def]
        if "cmdline" in self.given:
            return parse_cmdline(self.given["cmdline"], "/proc/cmdline")
        return super().cmdline()

    def kernel_config(self) -> dict[str, str]:
        return self._get("kernel_config", super().kernel_config)

    def modules(self) -> ModuleState:
        return self._get("modules", super().modules)

    def kernel_log(self) -> KernelLog:
        if "kernel_log" in self.given:
            return KernelLog(tuple(self.given["kernel_log"].splitlines()), "dmesg")
        return super().kernel_log()

    def iommu_class(self) -> tuple[str, ...]:
        return self._get("iommu_class", super().iommu_class)

    def iommu_groups(self) -> dict[str, tuple[str, ...]]:
        if "pci" in self.given and "iommu_groups" not in self.given:
            groups: dict[str, list[str]] = {}
            for d in self.given["pci"]:
                if d.iommu_group is not None:
                    groups.setdefault(d.iommu_group, []).append(d.address)
            return {g: tuple(v) for g, v in groups.items()}
        return self._get("iommu_groups", super().iommu_groups)

    def pci_devices(self) -> dict[str, PciDevice]:
        if "pci" in self.given:
            return {d.address: d for d in self.given["pci"]}
        return super().pci_devices()

    def modprobe_config(self):  # type: ignore[no-untyped-def]
        if "modprobe" in self.given:
            out = []
            for path, text in self.given["modprobe"].items():
                out.extend(parse_modprobe(text, path))
            return tuple(out)
        return super().modprobe_config()

    def early_load(self) -> EarlyLoadConfig:
        return self._get("early_load", super().early_load)

    def boot_config(self) -> BootConfig:
        return self._get("boot_config", super().boot_config)


def card(group: str | None = "1", drivers: tuple[str | None, ...] = ("nouveau", "snd_hda_intel", "xhci_hcd", "nvidia-gpu"),
         bus: str = "01") -> list[PciDevice]:
    """The field notes' four-function NVIDIA card."""
    spec = [
        ("0", 0x030000, "1e84", ("nvidiafb", "nouveau")),
        ("1", 0x040300, "10f8", ("snd_hda_intel",)),
        ("2", 0x0C0330, "1ad8", ("xhci_pci",)),
        ("3", 0x0C8000, "1ad9", ("i2c_nvidia_gpu",)),
    ]
    return [
        PciDevice(f"0000:{bus}:00.{fn}", cls, "10de", dev, "10de:139f", "a1", drv, group,
                  False if cls >> 16 == 3 else None, None, None, mods)
        for (fn, cls, dev, mods), drv in zip(spec, drivers, strict=True)
    ]


def root_port(group: str = "1") -> PciDevice:
    return PciDevice("0000:00:01.0", 0x060400, "8086", "1901", None, "07", "pcieport", group)


def igpu(group: str = "0") -> PciDevice:
    return PciDevice("0000:00:02.0", 0x030000, "8086", "3e92", None, "00", "i915", group, True)
