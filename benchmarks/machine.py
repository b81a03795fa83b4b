"""What a figure ran on and what it cost the machine: the CPU line (model name, family and model
numbers, logical CPUs, the vector extensions that decide TensorFlow's kernels, oneDNN on or off)
and a process's own peak resident memory.

Virtual machines often show a bare model name ("AMD EPYC") for several generations; the family
and model numbers of /proc/cpuinfo tell them apart (AMD family 25 is Zen 3 and Zen 4, family 26
Zen 5). Parsing needs no TensorFlow; `onednn_enabled` asks the TensorFlow already loaded.
"""

import dataclasses
import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> the name the CPU line uses for it.
EXTENSIONS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}
BF16_UNITS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class Cpu:
    """The CPU a measurement ran on; `onednn` None when unknown."""

    model: str
    family: str | None
    logical_cpus: int
    flags: frozenset
    onednn: bool | None = None

    @property
    def has_bf16_units(self) -> bool:
        """Whether bfloat16 runs in hardware (AVX512-BF16 or AMX); elsewhere it is emulated."""
        return any(flag in self.flags for flag in BF16_UNITS)

    def describe(self) -> str:
        """One line: "AMD EPYC (family 26, model 2), 2 logical CPUs: AVX2 yes, ...; oneDNN on"."""
        found = ", ".join(
            f"{name} {'yes' if flag in self.flags else 'no'}" for flag, name in EXTENSIONS.items()
        )
        onednn = {True: "on", False: "off", None: "unknown"}[self.onednn]
        name = f"{self.model} ({self.family})" if self.family else self.model
        return f"{name}, {self.logical_cpus} logical CPUs: {found}; oneDNN {onednn}"


def parse_cpuinfo(text: str) -> tuple[str | None, str | None, frozenset]:
    """The first processor's model name, "family F, model M" and flags in /proc/cpuinfo's text
    (None, None and no flags where absent)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if key == "processor" and fields:
            break  # the first processor's lines only
        if sep:
            fields[key] = value.strip()
    family, model = fields.get("cpu family"), fields.get("model")
    numbers = f"family {family}, model {model}" if family and model else None
    return fields.get("model name"), numbers, frozenset(fields.get("flags", "").split())


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs oneDNN's kernels; None if it does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def this_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    """The CPU this process runs on, with the loaded TensorFlow's oneDNN state."""
    try:
        model, family, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, family, flags = None, None, frozenset()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = model or platform.processor() or "unknown CPU"
    return Cpu(model, family, cpus, flags, onednn_enabled())


def peak_rss_gb(status: Path = Path("/proc/self/status")) -> float | None:
    """This process's peak resident memory in GB (1e9 bytes): VmHWM, which starts afresh at
    `exec` (a child's `ru_maxrss` would carry its parent's peak at the fork); None off Linux."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None
