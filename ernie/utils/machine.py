"""What CPU this runs on, from its features (never guessed from the vendor): flags and model name from
``/proc/cpuinfo`` (Linux; empty elsewhere), the cores this process may use, and a one-line summary for reports.

Contract: ``cpu_info(cpuinfo=...) -> dict`` (the first processor's fields), ``parse_cpuinfo(text) -> dict`` (the same
from the file's text), ``cpu_flags(cpuinfo=...) -> set``, ``cpu_has_bf16(flags=None) -> bool`` (``avx512_bf16`` or
``amx_bf16``), ``cpu_has_vnni(flags=None) -> bool``, ``describe_machine(cpuinfo=...) -> str``; nothing is cached,
nothing imported beyond the standard library. The one reader of ``/proc/cpuinfo`` (CPU tuning, INT8 export, reports).
"""

from __future__ import annotations

import os

CPUINFO = "/proc/cpuinfo"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The fields (``vendor_id``, ``model name``, ``flags`` ...) of the first processor in a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_info(cpuinfo: str = CPUINFO) -> dict[str, str]:
    """:func:`parse_cpuinfo` of the file ``cpuinfo``; {} where there is no such file."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read(1 << 16))
    except OSError:
        return {}


def cpu_flags(cpuinfo: str = CPUINFO) -> set[str]:
    """The ``flags`` of the first processor in ``cpuinfo``; an empty set where there is no such file."""
    return set(cpu_info(cpuinfo).get("flags", "").split())


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """True when the CPU has int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni"})


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe_machine(cpuinfo: str = CPUINFO) -> str:
    """E.g. ``AMD EPYC, 2 cores; bf16: avx512_bf16 (no AMX); VNNI: avx512_vnni``: what makes figures move."""
    info = cpu_info(cpuinfo)
    flags = set(info.get("flags", "").split())
    bf16 = [f for f in BF16_FLAGS if f in flags]
    vnni = sorted(f for f in flags if f in ("avx512_vnni", "avx_vnni"))
    amx = "" if "amx_tile" in flags else " (no AMX)"
    return (
        f"{info.get('model name', 'unknown CPU')}, {usable_cores()} cores; "
        f"bf16: {', '.join(bf16) or 'none'}{amx}; VNNI: {', '.join(vnni) or 'none'}"
    )
