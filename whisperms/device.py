"""Which device we run on and what it offers, decided in one place.

CPU: float32 (bfloat16 matmul is unsupported there and float16 is no faster), eager attention, Conv2D-based conv.
Ascend kernels (FlashAttention-2, native conv1d) are selected here once they are wired in; until then every device
runs the reference paths.
"""
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


def ascend_available() -> bool:
    try:
        return ms.hal.is_available("Ascend")
    except Exception:  # older MindSpore, or no Ascend runtime installed: both mean no Ascend here
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
    ms.set_device(device)
    return Runtime(device=device, dtype=dtype, attn_implementation="eager", conv="conv2d")
