"""Which device we run on and what it offers, decided in one place.

CPU: float32 (bfloat16 matmul is unsupported there and float16 is no faster), eager attention, Conv2D-based conv.
Ascend kernels (FlashAttention-2, native conv1d) are selected here once they are wired in; until then every device
runs the reference paths.
"""
import os
from dataclasses import dataclass

import mindspore as ms

from .errors import OptionsError

DEVICES = ("CPU", "Ascend")
DTYPES = {"float32": ms.float32, "float16": ms.float16}


@dataclass(frozen=True)
class Runtime:
    device: str            # "CPU" or "Ascend"
    dtype: str             # parameter and activation dtype; LayerNorm and softmax always run in float32
    attn_implementation: str
    conv: str


CANN_HOMES = ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME")
CANN_DEFAULT = "/usr/local/Ascend"


def ascend_available() -> bool:
    """True when MindSpore sees an Ascend device. Without a CANN installation there can be none, and MindSpore's
    probe would print plugin-loading warnings on every CPU run, so it is only asked when CANN is present."""
    if not any(os.environ.get(name) for name in CANN_HOMES) and not os.path.isdir(CANN_DEFAULT):
        return False
    try:
        return ms.hal.is_available("Ascend")
    except Exception:  # older MindSpore or a broken runtime: both mean no usable Ascend here
        return False


def select(device=None, dtype=None) -> Runtime:
    if device is None:
        device = "Ascend" if ascend_available() else "CPU"
    matches = [d for d in DEVICES if d.lower() == str(device).lower()]
    if not matches:
        raise OptionsError(f"unknown device '{device}': use one of {', '.join(DEVICES)}")
    device = matches[0]
    if device == "Ascend" and not ascend_available():
        raise OptionsError("device 'Ascend' was asked for but MindSpore reports no Ascend device here")
    dtype = dtype or ("float16" if device == "Ascend" else "float32")
    if dtype not in DTYPES:
        raise OptionsError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
    _use_device(device)
    return Runtime(device=device, dtype=dtype, attn_implementation="eager", conv="conv2d")


def _use_device(device: str):
    """Point MindSpore at `device` once: it refuses a change after its runtime has run a kernel, so a second
    load_model on the same device must not ask again, and a switch mid-process is a clear error."""
    if ms.get_context("device_target") == device:
        return
    try:
        ms.set_device(device)
    except RuntimeError:
        raise OptionsError(f"MindSpore already runs on {ms.get_context('device_target')} in this process; "
                           f"device '{device}' must be chosen before anything runs") from None
