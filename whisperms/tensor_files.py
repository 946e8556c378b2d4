"""Tensor files read by hand, without torch: safetensors files and CTranslate2's model.bin. numpy
has no bfloat16 (it becomes float32), and a truncated or corrupted file must give a one-line
CheckpointError, not a traceback."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from .errors import CheckpointError


def _corrupted(path, what):
    return CheckpointError(f"{path}: truncated or corrupted file ({what})")


def _decode(raw: np.ndarray, dtype, shape) -> np.ndarray:
    """A fresh array from the raw little-endian bytes `raw` (uint8); bfloat16 and float64 become
    float32."""
    if dtype == "bfloat16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    arr = raw.view(np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return (
        arr.astype(np.float32)
        if arr.dtype.kind == "f" and arr.dtype.itemsize > 4
        else arr.astype(arr.dtype.name)
    )


def _map_file(path: Path) -> np.ndarray:
    try:
        size = path.stat().st_size
        return np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


# --- CTranslate2 (see ctranslate2/specs/model_spec.py `_serialize` and src/models/model.cc
# `Model::load`) ----------

# by type id (binary version >= 4)
_CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")
# binary versions < 4 stored the item size
_CT2_ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}
_CT2_MAX_VERSION = 6
# CTranslate2's global int16 scale, for old int16 models without saved scales
_CT2_INT16_DEFAULT_SCALE = 1000.0


class _Cursor:
    """Sequential little-endian reads over a mapped file; running off the end is a
    CheckpointError."""

    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise _corrupted(
                self.path, f"needed {n} bytes at offset {self.pos}, the file has {len(self.buf)}"
            )
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def ints(self, fmt, count):
        return struct.unpack(f"<{count}{fmt}", self.take(struct.calcsize(f"<{count}{fmt}")))

    def int(self, fmt):
        return self.ints(fmt, 1)[0]

    def string(self):
        raw = bytes(self.take(self.int("H")))
        try:
            return raw.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupted(self.path, f"invalid name at offset {self.pos - len(raw)}") from None


def read_ct2_variables(path):
    """All variables of a CTranslate2 model.bin (int8/int16 dequantized, bfloat16 as float32),
    aliases, header."""
    path = Path(path)
    cur = _Cursor(_map_file(path), path)
    version = cur.int("I")
    if not 1 <= version <= _CT2_MAX_VERSION:
        raise CheckpointError(
            f"{path}: unsupported CTranslate2 binary version {version} "
            f"(whisperms reads versions 1 to {_CT2_MAX_VERSION})"
        )
    spec, revision = (cur.string(), cur.int("I")) if version >= 2 else (None, 1)
    if spec is not None and spec != "WhisperSpec":
        raise CheckpointError(
            f"{path}: a CTranslate2 {spec or 'unnamed'} model, not a Whisper model"
        )
    variables = {}
    for _ in range(cur.int("I")):
        name = cur.string()
        rank = cur.int("B")
        shape = cur.ints("I", rank)
        if version >= 4:
            type_id = cur.int("B")
            if type_id >= len(_CT2_DTYPES):
                raise _corrupted(path, f"unknown data type id {type_id} for {name}")
            dtype, num_bytes = _CT2_DTYPES[type_id], cur.int("I")
        else:
            item_size = cur.int("B")
            if item_size not in _CT2_ITEM_SIZE_DTYPES:
                raise _corrupted(path, f"unknown item size {item_size} for {name}")
            dtype, num_bytes = _CT2_ITEM_SIZE_DTYPES[item_size], cur.int("I") * item_size
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if num_bytes != math.prod(shape) * item:
            raise _corrupted(path, f"{name} has {num_bytes} bytes for shape {shape}")
        variables[name] = _decode(np.asarray(cur.take(num_bytes)), dtype, shape)
    aliases = {}
    for _ in range(cur.int("I") if version >= 3 else 0):
        alias = cur.string()
        aliases[alias] = cur.string()
    # CTranslate2 stores equal tensors once and the others' names as aliases, each with the
    # quantization scale of the tensor it names (Model::load)
    for alias, target in aliases.items():
        for suffix in ("", "_scale"):
            if target + suffix in variables:
                variables.setdefault(alias + suffix, variables[target + suffix])
    _dequantize(variables, path)
    return variables, aliases, {"binary_version": version, "spec": spec, "spec_revision": revision}


def _dequantize(variables, path):
    """CTranslate2 quantization: float = int / scale, scale per output row (int8) or per tensor
    (int16)."""
    for name in [n for n, v in variables.items() if v.ndim and v.dtype in (np.int8, np.int16)]:
        scale = variables.pop(name + "_scale", None)
        if scale is None:
            if variables[name].dtype != np.int16:
                raise CheckpointError(f"{path}: int8 variable {name} has no {name}_scale")
            scale = np.float32(_CT2_INT16_DEFAULT_SCALE)
        scale = np.asarray(scale, np.float32)
        variables[name] = variables[name].astype(np.float32) / scale.reshape(
            scale.shape + (1,) * (variables[name].ndim - scale.ndim)
        )


# --- safetensors

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": "bfloat16",
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path) -> dict:
    """name -> np.ndarray of a safetensors file (bfloat16 and float64 become float32)."""
    path = Path(path)
    buf = _map_file(path)
    if len(buf) < 8:
        raise _corrupted(path, "shorter than a safetensors header")
    (header_len,) = struct.unpack_from("<Q", buf, 0)
    if header_len > len(buf) - 8:
        raise _corrupted(path, f"header length {header_len} exceeds the file size {len(buf)}")
    try:
        header = json.loads(bytes(buf[8 : 8 + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupted(path, "the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupted(path, "the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    start_of_data, tensors = 8 + header_len, {}
    for name, info in header.items():
        try:
            kind = info["dtype"]
            shape = tuple(int(x) for x in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _corrupted(path, f"bad header entry for {name}") from None
        dtype = _ST_DTYPES.get(kind) if isinstance(kind, str) else None
        if dtype is None:
            raise CheckpointError(
                f"{path}: tensor {name} is stored as {kind!r}, a type whisperms does not read "
                f"({', '.join(_ST_DTYPES)})"
            )
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if (
            not 0 <= begin <= end <= len(buf) - start_of_data
            or min(shape, default=0) < 0
            or end - begin != math.prod(shape) * item
        ):
            raise _corrupted(path, f"tensor {name} lies outside the file or has the wrong size")
        tensors[name] = _decode(
            np.asarray(buf[start_of_data + begin : start_of_data + end]), dtype, shape
        )
    return tensors
