"""What this CPU can do fast, for `--backend auto`: bf16 matrix units (AMX on Intel Xeon since Sapphire
Rapids, AVX-512-BF16 on Cooper Lake and AMD Zen 4+) make the bf16 backends faster than FP32; without them
bf16 is emulated and slower. VNNI makes INT8 graphs pay.

The flags come from /proc/cpuinfo, cross-checked with torch's own probes (a VM can advertise a flag that
the kernel or torch's build cannot use): a feature counts when both agree, or by torch's word alone where
there is no /proc/cpuinfo (macOS, Windows). Parsing is pure, so it is tested on sample texts.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

# the flags auto's choice depends on, in the order its line names them
NOTABLE = ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx_vnni")
# ARM "CPU implementer" codes of the vendors one meets in servers and laptops
ARM_IMPLEMENTERS = {"0x41": "ARM", "0x48": "HiSilicon", "0x4e": "NVIDIA", "0x51": "Qualcomm", "0x61": "Apple",
                    "0xc0": "Ampere"}
# /proc/cpuinfo flag -> torch.cpu probe answering the same question
TORCH_PROBES = {"amx_tile": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported",
                "avx512_vnni": "_is_vnni_supported"}


@dataclass(frozen=True)
class CpuCapabilities:
    """name: the CPU model, short; flags: its feature flags (x86 'flags', ARM 'Features');
    torch_capability: the vector level torch dispatches to (AVX512, AVX2, DEFAULT, SVE256...)."""
    name: str
    flags: frozenset[str]
    torch_capability: str | None = None

    @property
    def amx(self) -> bool:
        return {"amx_bf16", "amx_tile"} <= self.flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def fast_bf16(self) -> bool:
        """bf16 matrix maths in hardware, which oneDNN uses for bf16 convolutions."""
        return self.amx or self.avx512_bf16

    @property
    def vnni(self) -> bool:
        """INT8 dot products in hardware (what makes INT8 convolutions beat FP32)."""
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    def label(self) -> str:
        """e.g. "Intel Xeon Platinum 8480+ amx_bf16,avx512_bf16,avx512_vnni" or "AMD EPYC AVX2, no bf16"."""
        notable = [flag for flag in NOTABLE if flag in self.flags and (flag != "amx_bf16" or self.amx)]
        if notable:
            return f"{self.name} {','.join(notable)}"
        return f"{self.name} {self.torch_capability or 'unknown vector level'}, no bf16"


def short_name(model_name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+' -> 'Intel Xeon Platinum 8480+'; 'AMD EPYC 9654 96-Core Processor'
    -> 'AMD EPYC 9654': the one line auto prints stays short."""
    name = re.sub(r"\((R|TM|tm)\)", "", model_name)
    name = re.sub(r"\s+(CPU\s+)?@.*$|\s+\d+-Core Processor$|\s+Processor$", "", name)
    return " ".join(name.split())


def parse_cpuinfo(text: str) -> CpuCapabilities:
    """The first processor's name and flags from /proc/cpuinfo text (x86 or ARM layout)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: they are alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    name = fields.get("model name") or ""
    if not name and "CPU implementer" in fields:
        vendor = ARM_IMPLEMENTERS.get(fields["CPU implementer"].lower(), f"implementer {fields['CPU implementer']}")
        name = f"{vendor} part {fields.get('CPU part', '?')}"
    return CpuCapabilities(short_name(name) or "unknown CPU", flags)


def cross_check(parsed: CpuCapabilities | None, probes: dict[str, bool],
                torch_capability: str | None) -> CpuCapabilities:
    """Keep a /proc/cpuinfo flag that torch probes only if torch agrees (no AMX tiles: no amx_bf16 either);
    without cpuinfo (``parsed`` None) the flags are what torch's probes found."""
    if parsed is None:
        found = frozenset(flag for flag, ok in probes.items() if ok)
        return CpuCapabilities(platform.processor() or "unknown CPU", found, torch_capability)
    refused = {flag for flag, ok in probes.items() if not ok}
    if "amx_tile" in refused:
        refused.add("amx_bf16")
    return CpuCapabilities(parsed.name, parsed.flags - refused, torch_capability)


def torch_probes() -> dict[str, bool]:
    """torch's CPUID answers for the flags it can probe (private API: absent ones are skipped)."""
    return {flag: bool(getattr(torch.cpu, probe)()) for flag, probe in TORCH_PROBES.items()
            if hasattr(torch.cpu, probe)}


@cache
def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuCapabilities:
    """This machine's capabilities (read once per process)."""
    parsed = parse_cpuinfo(cpuinfo.read_text()) if cpuinfo.is_file() else None
    return cross_check(parsed, torch_probes(), torch.backends.cpu.get_cpu_capability())
