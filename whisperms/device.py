"""Which device we run on and what it offers, decided in one place.

CPU: float32, eager attention under jit, and the conv stem as one MatMul over stacked kernel taps
(model.Conv1d), whose speed does not depend on which Conv2D kernel MindSpore picks for a CPU.
Ascend: float16 (LayerNorm, softmax, logits in float32), FlashAttention-2 kernels (attention.py) and
the native `mint` conv1d.
"""

import atexit
import numbers
import os
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
import numpy as np
from mindspore import mint

from . import core_share
from .attention import EAGER, FLASH, IMPLEMENTATIONS
from .errors import OptionsError, warn

DEVICES = ("CPU", "Ascend")
DTYPES = {"float32": ms.float32, "float16": ms.float16}
AUTO = "auto"

MATMUL_TAPS = "matmul_taps"  # one MatMul over the stacked kernel taps: any device
NATIVE_CONV1D = "mint_conv1d"  # Conv1DExt: Ascend only ("kernel unregistered" on CPU)
# The Ascend-only conv kernel, looked up at trace/call time so tests can substitute an emulation of
# its contract.
CONV_KERNELS = {"conv1d": mint.nn.functional.conv1d}


def _plain_cell_registry():
    """MindSpore's Cell.__del__ removes the cell from a WeakKeyDictionary, which fails once the
    interpreter's shutdown has cleared the weakref module: a model still referenced then (a global
    of a script that imported multiprocessing, for one) printed a traceback per Cell, hundreds of
    lines, at exit. At exit a plain dict takes the registry's place; nothing reads it then."""
    ms.nn.Cell.global_cells = {}


atexit.register(_plain_cell_registry)


@dataclass(frozen=True)
class Runtime:
    device: str  # "CPU" or "Ascend"
    # parameter and activation dtype; LayerNorm, softmax and logits always run in float32
    dtype: str
    attn_implementation: str  # "eager" or "flash_attention_2" (attention.py)
    conv: str  # MATMUL_TAPS or NATIVE_CONV1D
    # False: every entry point runs eagerly (slow; the reference for the compiled path)
    jit: bool = True
    threads: Optional[int] = None  # CPU cores used, None = all (see `use_threads`)


CANN_HOMES = ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME")
CANN_DEFAULT = "/usr/local/Ascend"


def ascend_available() -> bool:
    """True when MindSpore sees an Ascend device. Without a CANN installation there can be none, and
    MindSpore's probe would print plugin-loading warnings on every CPU run, so it is only asked when
    CANN is present."""
    if not any(os.environ.get(name) for name in CANN_HOMES) and not os.path.isdir(CANN_DEFAULT):
        return False
    try:
        return ms.hal.is_available("Ascend")
    except Exception:  # older MindSpore or a broken runtime: both mean no usable Ascend here
        return False


def _attn_implementation(requested, device):
    if requested in (None, AUTO):
        return FLASH if device == "Ascend" else EAGER
    if requested not in IMPLEMENTATIONS:
        raise OptionsError(
            f"unknown attn_implementation '{requested}': use one of auto, "
            f"{', '.join(IMPLEMENTATIONS)}"
        )
    if requested == FLASH and device != "Ascend":
        raise OptionsError(
            f"attn_implementation '{FLASH}' needs an Ascend device: MindSpore's FlashAttention "
            "kernels "
            f"are Ascend-only ('kernel unregistered' on {device}); use 'eager' or 'auto'"
        )
    return requested


def select(device=None, dtype=None, attn_implementation=AUTO, jit=True, threads=None) -> Runtime:
    if device is None:
        device = "Ascend" if ascend_available() else "CPU"
    matches = [d for d in DEVICES if d.lower() == str(device).lower()]
    if not matches:
        raise OptionsError(f"unknown device '{device}': use one of {', '.join(DEVICES)}")
    device = matches[0]
    if device == "Ascend" and not ascend_available():
        raise OptionsError(
            "device 'Ascend' was asked for but MindSpore reports no Ascend device here"
        )
    if not isinstance(jit, (bool, np.bool_)):  # "no" was taken as True
        raise OptionsError(f"jit must be True or False, got {jit!r}")
    dtype = dtype or ("float16" if device == "Ascend" else "float32")
    if dtype not in DTYPES:
        raise OptionsError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
    attn = _attn_implementation(attn_implementation, device)
    _use_device(device)
    threads = use_threads(threads)
    return Runtime(
        device=device,
        dtype=dtype,
        attn_implementation=attn,
        conv=NATIVE_CONV1D if device == "Ascend" else MATMUL_TAPS,
        jit=bool(jit),
        threads=threads,
    )


def use_threads(threads) -> Optional[int]:
    """Run on `threads` CPU cores (None: all of them), like openai's --threads; returns the number
    used: more than the process may use are that many, with a warning (MindSpore made a kernel
    thread for each, which then took turns on the cores).

    MindSpore's CPU kernels do not keep to `op_tuning.threads_num` (a large MatMul still used every
    core), so on Linux the process and its existing threads are pinned to the first `threads` cores
    it may use; the MindSpore setting is made as well.
    """
    if threads is None:
        return None
    if (
        isinstance(threads, (bool, np.bool_))
        or not isinstance(threads, numbers.Integral)
        or threads < 1
    ):
        raise OptionsError(f"threads must be a positive integer, got {threads!r}")
    threads = int(threads)  # NumPy's integers too
    if hasattr(os, "sched_getaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if threads > len(cores):
            warn(
                f"{threads} threads asked for, and this process may use {len(cores)} cores: "
                f"using {len(cores)}"
            )
            threads = len(cores)
        if threads < len(cores):
            core_share.disable()  # these cores, not those other processes leave free
            core_share.pin_threads(cores[:threads])
    try:
        ms.device_context.cpu.op_tuning.threads_num(threads)
    # already set in this process, or an older MindSpore
    except (RuntimeError, ValueError, AttributeError):
        pass
    return threads


def _use_device(device: str):
    """Point MindSpore at `device` once: it refuses a change after its runtime has run a kernel, so
    a second load_model on the same device must not ask again, and a switch mid-process is a clear
    error."""
    if ms.get_context("device_target") == device:
        return
    try:
        ms.set_device(device)
    except RuntimeError:
        raise OptionsError(
            f"MindSpore already runs on {ms.get_context('device_target')} in this process; "
            f"device '{device}' must be chosen before anything runs"
        ) from None
