"""Numbers and units as gpukit writes them: sizes, times, bytes, bandwidths, CUDA versions.

A leaf: imports nothing of gpukit, so the analysis, the reports, the limits and the backends
all format alike without loading one another.
"""

from __future__ import annotations

import math

__all__ = ["cuda_version_text", "fmt_bytes", "fmt_gbps", "fmt_mib", "fmt_n", "fmt_n_est",
           "fmt_s", "gbps"]


def fmt_n(n: int) -> str:
    if n > 0 and n & (n - 1) == 0 and n >= 1024:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def fmt_n_est(n: float) -> str:
    """An interpolated size: 2^17.3 (about 161k)."""
    e = math.log2(n)
    if abs(e - round(e)) < 0.05:
        return f"2^{round(e)}"
    if n >= 1e6:
        approx = f"{n / 1e6:.3g}M"
    elif n >= 1e3:
        approx = f"{n / 1e3:.3g}k"
    else:
        approx = f"{n:.3g}"
    return f"2^{e:.1f} (about {approx})"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def fmt_bytes(nbytes: int) -> str:
    """An exact size in the largest binary unit that divides it: 4 KiB, 1 GiB, 1000 B."""
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def fmt_mib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.3g} MiB"


def fmt_gbps(value: float) -> str:
    return f"{value / 1000:.3g} TB/s" if value >= 1000 else f"{value:.3g} GB/s"


def gbps(nbytes: float, seconds: float) -> float:
    """Bytes over seconds, in GB/s (10^9 bytes, as bandwidths are quoted)."""
    if not seconds > 0:
        raise ValueError(f"a bandwidth needs a positive time, got {seconds!r} s")
    return nbytes / seconds / 1e9


def cuda_version_text(cuda_version: int) -> str:
    """CUDA's integer versions (13020) as text ("13.2")."""
    return f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"
