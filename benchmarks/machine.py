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
    "MS_COMPILER_CACHE_PATH",
)


def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine_info():
    text = _cpuinfo()
    model, flags = None, set()
    for line in text.splitlines():
        if line.startswith("model name") and model is None:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    info = {
        "cpu_model": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "thread_env": {
            k: os.environ.get(k) for k in THREAD_VARIABLES if os.environ.get(k) is not None
        },
    }
    try:
        info["mem_total_mb"] = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, IndexError, ValueError):
        pass
    return info


def describe(info):
    """One line: 'AMD EPYC, 2 usable cores, ISA avx2 avx512f ...'."""
    isa = " ".join(info.get("isa") or []) or "unknown"
    return f"{info.get('cpu_model')}, {info.get('cpus_usable')} usable cores, ISA: {isa}"


if __name__ == "__main__":
    print(describe(machine_info()))
