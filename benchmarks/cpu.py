"""The CPU a figure comes from: its model name with its family and model numbers, the vector
extensions that decide TensorFlow's kernels (AVX2, AVX-512, AVX512-BF16, AMX) and whether
oneDNN's kernels are on.

Virtual machines often show a bare model name ("AMD EPYC") for several generations of a CPU;
the family and model numbers of /proc/cpuinfo tell them apart (AMD family 25 is Zen 3 and
Zen 4, family 26 is Zen 5), so two tables of speed are known to come from the same CPU or not.

Parsing needs no TensorFlow; `onednn_enabled` asks the TensorFlow already loaded.
"""

import dataclasses
import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> the name figures use for it.
EXTENSIONS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "amx_bf16": "AMX",
}
BF16_UNITS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class Cpu:
    """What a measurement ran on.

    Args:
        model: the model name (lscpu's "Model name").
        family: "family F, model M" from /proc/cpuinfo's numbers; None when unknown.
        logical_cpus: logical CPUs this process may use.
        flags: the CPU flags of /proc/cpuinfo.
        onednn: whether TensorFlow's oneDNN kernels are on; None when unknown.
    """

    model: str
    logical_cpus: int
    flags: frozenset
    onednn: bool | None = None
    family: str | None = None

    @property
    def has_bf16_units(self) -> bool:
        """Whether bfloat16 runs in hardware (AVX512-BF16 or AMX); elsewhere it is emulated."""
        return any(flag in self.flags for flag in BF16_UNITS)

    def extensions(self) -> dict[str, bool]:
        return {name: flag in self.flags for flag, name in EXTENSIONS.items()}

    def describe(self) -> str:
        """One line, e.g. "AMD EPYC (family 26, model 2), 2 logical CPUs: AVX2 yes, AVX-512
        no, ...; oneDNN on"."""
        extensions = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in self.extensions().items())
        onednn = {True: "on", False: "off", None: "unknown"}[self.onednn]
        name = f"{self.model} ({self.family})" if self.family else self.model
        return f"{name}, {self.logical_cpus} logical CPUs: {extensions}; oneDNN {onednn}"

    def to_json(self) -> dict:
        return dict(
            model=self.model,
            family=self.family,
            logical_cpus=self.logical_cpus,
            extensions=self.extensions(),
            onednn=self.onednn,
        )


def parse_cpuinfo(text: str) -> tuple[str | None, str | None, frozenset]:
    """The first processor's model name, "family F, model M" and flags in /proc/cpuinfo's text
    (None, None, {} where absent)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if key == "processor" and fields:
            break  # the first processor's lines only
        if sep:
            fields[key] = value.strip()
    numbers = fields.get("cpu family"), fields.get("model")
    family = f"family {numbers[0]}, model {numbers[1]}" if all(numbers) else None
    flags = frozenset(fields.get("flags", "").split())
    return fields.get("model name"), family, flags


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs oneDNN's kernels (it decides by the CPU unless
    TF_ENABLE_ONEDNN_OPTS says); None if this TensorFlow does not tell."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    try:
        return bool(_pywrap_util_port.IsMklEnabled())
    except AttributeError:
        return None


def this_cpu(onednn: bool | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    """The CPU this process runs on; `onednn` as measured by the caller (see `onednn_enabled`)."""
    try:
        model, family, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, family, flags = None, None, frozenset()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Cpu(model or platform.processor() or "unknown CPU", cpus, flags, onednn, family)
