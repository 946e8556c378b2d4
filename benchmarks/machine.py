"""What machine a benchmark ran on: CPU model, cores, the ISA flags that change MindSpore's kernel
choices, and the thread settings of the environment. Standard library only."""

import os
import platform
from pathlib import Path

# Instruction sets whose presence changes which CPU kernels libraries pick (oneDNN, MindSpore's
# nnacl, CTranslate2).
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CT2_USE_EXPERIMENTAL_PACKED_GEMM",
    # CTranslate2's GEMM library and kernels: MKL on an Intel CPU, oneDNN on others unless set
    "CT2_USE_MKL",
    "CT2_FORCE_CPU_ISA",
    "MS_COMPILER_CACHE_PATH",
)


def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine_info():
    text = _cpuinfo()
    model, flags, numbers, vendor = None, set(), {}, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("cpu family", "model") and key not in numbers:
            numbers[key] = value.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        if line.startswith("model name") and model is None:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    info = {
        "cpu_model": model or platform.processor(),
        # family and model tell apart CPUs sold under one name (lscpu's "AMD EPYC")
        "cpu_family_model": "/".join(numbers[k] for k in ("cpu family", "model") if k in numbers),
        # GenuineIntel or AuthenticAMD: CTranslate2 multiplies with MKL on one, oneDNN on the other
        "cpu_vendor": vendor,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "thread_env": {
            k: os.environ.get(k) for k in THREAD_VARIABLES if os.environ.get(k) is not None
        },
    }
    caches = _caches()
    if caches:
        info["caches"] = caches
    try:
        info["mem_total_mb"] = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, IndexError, ValueError):
        pass
    return info


def _caches():
    """{'L1d': '32K', 'L2': '1024K', 'L3': '32768K'} of the first CPU, from sysfs (Linux), or {}:
    how much a core keeps close changes which work splits are fast."""
    found = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        found[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return found


def describe(info):
    """One line: 'AMD EPYC (family/model 25/17), 2 usable cores, ISA: avx2 avx512f ..., caches L1d
    32K L2 1024K L3 32768K'."""
    isa = " ".join(info.get("isa") or []) or "unknown"
    family = f" (family/model {info['cpu_family_model']})" if info.get("cpu_family_model") else ""
    line = f"{info.get('cpu_model')}{family}, {info.get('cpus_usable')} usable cores, ISA: {isa}"
    caches = info.get("caches")
    if caches:
        line += ", caches " + " ".join(f"{level} {size}" for level, size in caches.items())
    return line


if __name__ == "__main__":
    print(describe(machine_info()))
