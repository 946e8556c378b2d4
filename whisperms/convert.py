"""Checkpoint folders -> whisperms checkpoints, and the strict load into the network.

Readers for CTranslate2 (`model.bin`), Hugging Face (`model.safetensors`, possibly sharded) and
whisperms folders all return a `Checkpoint` whose state uses openai's parameter names, which equal
the Cell parameter names of `whisperms.model.Whisper`. The name maps live here, once: `_TOP_LEVEL`
and `_BLOCK` below.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import CheckpointError, OptionsError
from .model import ModelDimensions

FORMAT_VERSION = 1  # of the whisperms folder layout written by save_checkpoint
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CT2_WEIGHTS_FILE = "model.bin"
HF_INDEX_FILE = "model.safetensors.index.json"
HF_GENERATION_FILE = "generation_config.json"
SAVE_DTYPES = {"float32": np.float32, "float16": np.float16}

# --- The name maps
# -------------------------------------------------------------------------------------------------
# Top level: (openai name, shape from dims, CTranslate2 variable, Hugging Face tensor).
_TOP_LEVEL = [
    (
        "encoder.conv1.weight",
        lambda d: (d.n_audio_state, d.n_mels, 3),
        "encoder/conv1/weight",
        "model.encoder.conv1.weight",
    ),
    (
        "encoder.conv1.bias",
        lambda d: (d.n_audio_state,),
        "encoder/conv1/bias",
        "model.encoder.conv1.bias",
    ),
    (
        "encoder.conv2.weight",
        lambda d: (d.n_audio_state, d.n_audio_state, 3),
        "encoder/conv2/weight",
        "model.encoder.conv2.weight",
    ),
    (
        "encoder.conv2.bias",
        lambda d: (d.n_audio_state,),
        "encoder/conv2/bias",
        "model.encoder.conv2.bias",
    ),
    (
        "encoder.positional_embedding",
        lambda d: (d.n_audio_ctx, d.n_audio_state),
        "encoder/position_encodings/encodings",
        "model.encoder.embed_positions.weight",
    ),
    (
        "encoder.ln_post.weight",
        lambda d: (d.n_audio_state,),
        "encoder/layer_norm/gamma",
        "model.encoder.layer_norm.weight",
    ),
    (
        "encoder.ln_post.bias",
        lambda d: (d.n_audio_state,),
        "encoder/layer_norm/beta",
        "model.encoder.layer_norm.bias",
    ),
    (
        "decoder.token_embedding.weight",
        lambda d: (d.n_vocab, d.n_text_state),
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    ),
    (
        "decoder.positional_embedding",
        lambda d: (d.n_text_ctx, d.n_text_state),
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    ),
    (
        "decoder.ln.weight",
        lambda d: (d.n_text_state,),
        "decoder/layer_norm/gamma",
        "model.decoder.layer_norm.weight",
    ),
    (
        "decoder.ln.bias",
        lambda d: (d.n_text_state,),
        "decoder/layer_norm/beta",
        "model.decoder.layer_norm.bias",
    ),
]

# Per block: (openai module, CTranslate2 module, part, parts, Hugging Face module, kind).
# CTranslate2 fuses the self-attention q,k,v (parts of 3) and the cross-attention k,v (parts of 2)
# along the output axis; the fused bias holds a key part that openai's model does not have (it is
# zero, and a key bias cancels in the softmax anyway).
_BLOCK = [
    ("attn.query", "self_attention/linear_0", 0, 3, "self_attn.q_proj", "linear"),
    ("attn.key", "self_attention/linear_0", 1, 3, "self_attn.k_proj", "linear_no_bias"),
    ("attn.value", "self_attention/linear_0", 2, 3, "self_attn.v_proj", "linear"),
    ("attn.out", "self_attention/linear_1", 0, 1, "self_attn.out_proj", "linear"),
    ("attn_ln", "self_attention/layer_norm", 0, 1, "self_attn_layer_norm", "norm"),
    ("cross_attn.query", "attention/linear_0", 0, 1, "encoder_attn.q_proj", "linear"),
    ("cross_attn.key", "attention/linear_1", 0, 2, "encoder_attn.k_proj", "linear_no_bias"),
    ("cross_attn.value", "attention/linear_1", 1, 2, "encoder_attn.v_proj", "linear"),
    ("cross_attn.out", "attention/linear_2", 0, 1, "encoder_attn.out_proj", "linear"),
    ("cross_attn_ln", "attention/layer_norm", 0, 1, "encoder_attn_layer_norm", "norm"),
    ("mlp.0", "ffn/linear_0", 0, 1, "fc1", "mlp_in"),
    ("mlp.2", "ffn/linear_1", 0, 1, "fc2", "mlp_out"),
    ("mlp_ln", "ffn/layer_norm", 0, 1, "final_layer_norm", "norm"),
]
# kind -> [(openai leaf, CTranslate2 leaf, shape from the block width n)]
_LEAVES = {
    "linear": [("weight", "weight", lambda n: (n, n)), ("bias", "bias", lambda n: (n,))],
    "linear_no_bias": [("weight", "weight", lambda n: (n, n))],
    "norm": [("weight", "gamma", lambda n: (n,)), ("bias", "beta", lambda n: (n,))],
    "mlp_in": [("weight", "weight", lambda n: (4 * n, n)), ("bias", "bias", lambda n: (4 * n,))],
    "mlp_out": [("weight", "weight", lambda n: (n, 4 * n)), ("bias", "bias", lambda n: (n,))],
}
# Hugging Face's output projection, tied to decoder.embed_tokens
_HF_TIED_OUTPUT = "proj_out.weight"
# the same in CTranslate2 (an alias of decoder/embeddings/weight)
_CT2_TIED_OUTPUT = "decoder/projection/weight"


@dataclass(frozen=True)
class _Entry:
    name: str  # openai name
    shape: tuple
    ct2: str  # CTranslate2 variable
    part: int  # index of this tensor in a fused CTranslate2 variable
    parts: int
    hf: str  # Hugging Face tensor


def _layout(dims: ModelDimensions):
    """Every tensor of a Whisper of these dims, with its name in each format."""
    entries = [_Entry(name, shape(dims), ct2, 0, 1, hf) for name, shape, ct2, hf in _TOP_LEVEL]
    for side, n, layers in (
        ("encoder", dims.n_audio_state, dims.n_audio_layer),
        ("decoder", dims.n_text_state, dims.n_text_layer),
    ):
        for i in range(layers):
            for module, ct2, part, parts, hf, kind in _BLOCK:
                if side == "encoder" and module.startswith("cross_attn"):
                    continue
                for leaf, ct2_leaf, shape in _LEAVES[kind]:
                    entries.append(
                        _Entry(
                            f"{side}.blocks.{i}.{module}.{leaf}",
                            shape(n),
                            f"{side}/layer_{i}/{ct2}/{ct2_leaf}",
                            part,
                            parts,
                            f"model.{side}.layers.{i}.{hf}.{leaf}",
                        )
                    )
    return entries


def state_shapes(dims: ModelDimensions) -> dict:
    """openai name -> shape of every parameter of `Whisper(dims)`."""
    return {e.name: e.shape for e in _layout(dims)}


# --- The released models
# --------------------------------------------------------------------------------------------
# openai's released configurations, once: hub.py names and downloads them, model_name recognises
# them.
_TINY = dict(
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
)
_BASE = dict(
    n_audio_state=512,
    n_audio_head=8,
    n_audio_layer=6,
    n_text_state=512,
    n_text_head=8,
    n_text_layer=6,
)
_SMALL = dict(
    n_audio_state=768,
    n_audio_head=12,
    n_audio_layer=12,
    n_text_state=768,
    n_text_head=12,
    n_text_layer=12,
)
_MEDIUM = dict(
    n_audio_state=1024,
    n_audio_head=16,
    n_audio_layer=24,
    n_text_state=1024,
    n_text_head=16,
    n_text_layer=24,
)
_LARGE = dict(
    n_audio_state=1280,
    n_audio_head=20,
    n_audio_layer=32,
    n_text_state=1280,
    n_text_head=20,
    n_text_layer=32,
)
_EN, _MULTI, _V3 = (
    dict(n_mels=80, n_vocab=51864),
    dict(n_mels=80, n_vocab=51865),
    dict(n_mels=128, n_vocab=51866),
)


def _dims(size, vocab, **override):
    return ModelDimensions(n_audio_ctx=1500, n_text_ctx=448, **{**size, **vocab, **override})


RELEASED_DIMENSIONS = {
    "tiny.en": _dims(_TINY, _EN),
    "tiny": _dims(_TINY, _MULTI),
    "base.en": _dims(_BASE, _EN),
    "base": _dims(_BASE, _MULTI),
    "small.en": _dims(_SMALL, _EN),
    "small": _dims(_SMALL, _MULTI),
    "medium.en": _dims(_MEDIUM, _EN),
    "medium": _dims(_MEDIUM, _MULTI),
    "large-v1": _dims(_LARGE, _MULTI),
    "large-v2": _dims(_LARGE, _MULTI),
    "large-v3": _dims(_LARGE, _V3),
    "large-v3-turbo": _dims(_LARGE, _V3, n_text_layer=4),
}


def model_name(dims: ModelDimensions):
    """openai's model name for these dims ("tiny.en", "large-v3-turbo", ...), or None if they match
    no release.

    large-v1 and large-v2 have the same dims: reported as "large-v2". A release's encoder under a
    shallower decoder is a distilled model ("distil-large-v3"); large-v3-turbo is itself a release,
    not a distillation base.
    """
    released = {name: d for name, d in RELEASED_DIMENSIONS.items() if name != "large-v1"}
    for name, candidate in released.items():
        if candidate == dims:
            return name
    for name, candidate in released.items():
        if name != "large-v3-turbo" and replace(candidate, n_text_layer=dims.n_text_layer) == dims:
            return "distil-" + name
    return None


@dataclass
class Checkpoint:
    dims: ModelDimensions
    # openai name -> np.ndarray (float16 or float32, as stored; other float types become float32)
    state: dict
    # [[layer, head], ...] of the decoder's cross-attention, for word timing
    alignment_heads: list[list[int]] | None
    tokenizer_path: Path  # the tokenizer.json to use with these weights
    # openai model name ("tiny.en", "base", "large-v3", ...), None if unknown
    name: str | None = None
    source: dict | None = None  # {"format": ..., "path": ...}: where the weights came from


# --- Detection and dispatch
# ----------------------------------------------------------------------------------------


def detect_format(folder) -> str:
    """ "whisperms", "huggingface" or "ctranslate2" for a checkpoint folder; CheckpointError
    otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    config = _read_json(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else {}
    if isinstance(config, dict) and "format_version" in config and "dims" in config:
        return "whisperms"
    if (folder / CT2_WEIGHTS_FILE).is_file():
        return "ctranslate2"
    if (
        (folder / WEIGHTS_FILE).is_file()
        or (folder / HF_INDEX_FILE).is_file()
        or (isinstance(config, dict) and config.get("model_type") == "whisper")
    ):
        return "huggingface"
    raise CheckpointError(
        f"{folder}: not a Whisper checkpoint folder (expected {CT2_WEIGHTS_FILE} for CTranslate2, "
        f"{WEIGHTS_FILE} or {HF_INDEX_FILE} with {CONFIG_FILE} for Hugging Face, "
        f"or a whisperms {CONFIG_FILE})"
    )


def read_checkpoint(folder) -> Checkpoint:
    readers = {
        "whisperms": read_whisperms,
        "huggingface": read_huggingface,
        "ctranslate2": read_ctranslate2,
    }
    return readers[detect_format(folder)](folder)


def convert(src, dst, dtype="float32", overwrite=False) -> Path:
    """Read any supported checkpoint folder `src` and write it as a whisperms folder `dst`."""
    return save_checkpoint(read_checkpoint(src), dst, dtype=dtype, overwrite=overwrite)


# --- Shared helpers
# ------------------------------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


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


def _check_state(state: dict, dims: ModelDimensions, where):
    """Every tensor of `dims` present with its shape, nothing else; the first offender is named."""
    expected = state_shapes(dims)
    for name, shape in expected.items():
        if name not in state:
            raise CheckpointError(f"{where}: missing tensor {name}")
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"expected {shape} for the model's dims"
            )
    for name in state:
        if name not in expected:
            raise CheckpointError(f"{where}: unexpected tensor {name}")


def _alignment_heads(heads, dims: ModelDimensions, where):
    if heads is None:
        return None
    ok = isinstance(heads, list) and all(
        isinstance(h, (list, tuple))
        and len(h) == 2
        and all(isinstance(x, int) for x in h)
        and 0 <= h[0] < dims.n_text_layer
        and 0 <= h[1] < dims.n_text_head
        for h in heads
    )
    if not ok:
        raise CheckpointError(
            f"{where}: alignment_heads must be [layer, head] pairs within "
            f"{dims.n_text_layer} layers x {dims.n_text_head} heads"
        )
    return [list(h) for h in heads]


def _tokenizer(folder: Path) -> Path:
    path = folder / TOKENIZER_FILE
    if path.is_file():
        return path
    vocab = sorted(p.name for p in folder.glob("vocabulary.*"))
    found = f" (found only {', '.join(vocab)})" if vocab else ""
    raise CheckpointError(
        f"{folder}: a {TOKENIZER_FILE} is needed{found}; copy it from the model's Hugging Face "
        f"repository (openai/whisper-<name>)"
    )


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


def read_ctranslate2(folder) -> Checkpoint:
    folder = Path(folder)
    bin_path = folder / CT2_WEIGHTS_FILE
    if not bin_path.is_file():
        raise CheckpointError(f"{folder}: not a CTranslate2 folder (expected {CT2_WEIGHTS_FILE})")
    variables, _, header = read_ct2_variables(bin_path)
    dims = _ct2_dims(variables, bin_path)
    state, used = {}, set()
    for e in _layout(dims):
        if e.ct2 not in variables:
            raise CheckpointError(f"{bin_path}: missing variable {e.ct2}")
        value = variables[e.ct2]
        if value.shape[:1] != (e.shape[0] * e.parts,):
            raise CheckpointError(
                f"{bin_path}: variable {e.ct2} has shape {value.shape}, expected "
                f"{e.parts} x {e.shape[0]} rows"
            )
        state[e.name] = (
            np.ascontiguousarray(np.split(value, e.parts)[e.part]) if e.parts > 1 else value
        )
        used.add(e.ct2)
    tied = variables.get(_CT2_TIED_OUTPUT)
    if tied is not None and not np.array_equal(tied, state["decoder.token_embedding.weight"]):
        raise CheckpointError(
            f"{bin_path}: {_CT2_TIED_OUTPUT} differs from the token embedding "
            f"(untied output projections are not supported)"
        )
    used.add(_CT2_TIED_OUTPUT)
    # scalars are runtime flags
    extra = [n for n, v in variables.items() if v.ndim and n not in used]
    if extra:
        raise CheckpointError(f"{bin_path}: unexpected variable {extra[0]}")
    _check_state(state, dims, bin_path)
    config = _read_json(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else {}
    heads = _alignment_heads(
        config.get("alignment_heads") if isinstance(config, dict) else None,
        dims,
        folder / CONFIG_FILE,
    )
    source = {"format": "ctranslate2", "path": str(folder.resolve()), **header}
    return Checkpoint(dims, state, heads, _tokenizer(folder), model_name(dims), source)


def _ct2_dims(variables, path) -> ModelDimensions:
    def shape(name, rank):
        if name not in variables:
            raise CheckpointError(f"{path}: missing variable {name}")
        if variables[name].ndim != rank:
            raise CheckpointError(f"{path}: variable {name} has shape {variables[name].shape}")
        return variables[name].shape

    def layers(side):
        found = {
            int(m.group(1)) for n in variables for m in [re.match(rf"{side}/layer_(\d+)/", n)] if m
        }
        return max(found) + 1 if found else 0

    # every Whisper uses 64-dimensional heads; older files may lack the scalar
    def heads(side, width):
        value = variables.get(f"{side}/num_heads")
        return int(value) if value is not None else width // 64

    n_audio_state, n_mels, _ = shape("encoder/conv1/weight", 3)
    n_vocab, n_text_state = shape("decoder/embeddings/weight", 2)
    return ModelDimensions(
        n_mels=n_mels,
        n_audio_ctx=shape("encoder/position_encodings/encodings", 2)[0],
        n_audio_state=n_audio_state,
        n_audio_head=heads("encoder", n_audio_state),
        n_audio_layer=layers("encoder"),
        n_vocab=n_vocab,
        n_text_ctx=shape("decoder/position_encodings/encodings", 2)[0],
        n_text_state=n_text_state,
        n_text_head=heads("decoder", n_text_state),
        n_text_layer=layers("decoder"),
    )


# --- safetensors (read by hand: numpy has no bfloat16, and a corrupted file must give a one-line
# error) ------------

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
            dtype = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(x) for x in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _corrupted(path, f"bad header entry for {name}") from None
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


# --- Hugging Face transformers folders
# -----------------------------------------------------------------------------

_HF_DIMS = {
    "n_mels": "num_mel_bins",
    "n_audio_ctx": "max_source_positions",
    "n_audio_state": "d_model",
    "n_audio_head": "encoder_attention_heads",
    "n_audio_layer": "encoder_layers",
    "n_vocab": "vocab_size",
    "n_text_ctx": "max_target_positions",
    "n_text_state": "d_model",
    "n_text_head": "decoder_attention_heads",
    "n_text_layer": "decoder_layers",
}


def read_huggingface(folder) -> Checkpoint:
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: a Hugging Face folder needs {CONFIG_FILE}")
    config = _read_json(config_path)
    if not isinstance(config, dict) or config.get("model_type", "whisper") != "whisper":
        raise CheckpointError(
            f"{config_path}: not a Whisper config (model_type "
            f"{config.get('model_type') if isinstance(config, dict) else None!r})"
        )
    missing = [key for key in _HF_DIMS.values() if not isinstance(config.get(key), int)]
    if missing:
        raise CheckpointError(f"{config_path}: missing or non-integer {missing[0]}")
    dims = ModelDimensions(**{ours: config[theirs] for ours, theirs in _HF_DIMS.items()})
    tensors, where = _hf_tensors(folder)
    names = {e.hf: e.name for e in _layout(dims)}
    state = {}
    for hf_name, value in tensors.items():
        key = "model." + hf_name if hf_name.startswith(("encoder.", "decoder.")) else hf_name
        if key in names:
            state[names[key]] = value
        elif key != _HF_TIED_OUTPUT:
            raise CheckpointError(f"{where}: unexpected tensor {hf_name}")
    absent = [e.hf for e in _layout(dims) if e.name not in state]
    if absent:
        raise CheckpointError(f"{where}: missing tensor {absent[0]}")
    tied = tensors.get(_HF_TIED_OUTPUT)
    embedding = state.get("decoder.token_embedding.weight")
    if tied is not None and embedding is not None and not np.array_equal(tied, embedding):
        raise CheckpointError(
            f"{where}: {_HF_TIED_OUTPUT} differs from decoder.embed_tokens.weight "
            f"(untied output projections are not supported)"
        )
    _check_state(state, dims, where)
    generation_path = folder / HF_GENERATION_FILE
    generation = _read_json(generation_path) if generation_path.is_file() else {}
    heads = _alignment_heads(
        generation.get("alignment_heads") if isinstance(generation, dict) else None,
        dims,
        generation_path,
    )
    repo = str(config.get("_name_or_path") or "")
    match = re.search(r"whisper-([\w.-]+)$", repo)
    name = match.group(1) if match else model_name(dims)
    source = {"format": "huggingface", "path": str(folder.resolve()), "name_or_path": repo or None}
    return Checkpoint(dims, state, heads, _tokenizer(folder), name, source)


def _hf_tensors(folder: Path):
    """All tensors of a single-file or sharded safetensors folder, and the file(s) to name in
    errors."""
    single, index_path = folder / WEIGHTS_FILE, folder / HF_INDEX_FILE
    if single.is_file():
        return read_safetensors(single), single
    if not index_path.is_file():
        raise CheckpointError(
            f"{folder}: expected {WEIGHTS_FILE} or {HF_INDEX_FILE} (only safetensors weights "
            f"are supported)"
        )
    index = _read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path}: no weight_map of tensor name -> shard file")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if not (folder / shard).is_file():
            raise CheckpointError(f"{index_path}: shard {shard} is missing")
        tensors.update(read_safetensors(folder / shard))
    if set(tensors) != set(weight_map):
        name = sorted(set(tensors) ^ set(weight_map))[0]
        raise CheckpointError(
            f"{index_path}: tensor {name} is {'not ' if name in tensors else ''}listed in the "
            f"index but {'' if name in tensors else 'not '}found in the shards"
        )
    return tensors, index_path


# --- whisperms folders
# ---------------------------------------------------------------------------------------------


def read_whisperms(folder) -> Checkpoint:
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: a whisperms checkpoint needs {CONFIG_FILE}")
    config = _read_json(config_path)
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{config_path}: unsupported whisperms format_version {version!r} "
            f"(expected {FORMAT_VERSION})"
        )
    try:
        dims = ModelDimensions(**config["dims"])
        if not all(isinstance(v, int) for v in dims.to_dict().values()):
            raise TypeError("non-integer dimension")
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{config_path}: bad dims ({e})") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: a whisperms checkpoint needs {WEIGHTS_FILE}")
    state = read_safetensors(weights)
    _check_state(state, dims, weights)
    tokenizer = folder / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise CheckpointError(f"{folder}: a whisperms checkpoint needs {TOKENIZER_FILE}")
    heads = _alignment_heads(config.get("alignment_heads"), dims, config_path)
    source = config.get("source") or {"format": "whisperms", "path": str(folder.resolve())}
    return Checkpoint(dims, state, heads, tokenizer, config.get("name"), source)


def save_checkpoint(ckpt: Checkpoint, dst, dtype="float32", overwrite=False) -> Path:
    """Write `ckpt` as a whisperms folder `dst`, atomically: built in a temporary sibling, then
    renamed into place.

    An existing non-empty `dst` is replaced only with `overwrite=True`, and only if it is a
    whisperms checkpoint.
    """
    if dtype not in SAVE_DTYPES:
        raise OptionsError(f"dtype must be one of {', '.join(SAVE_DTYPES)}, not {dtype!r}")
    from safetensors.numpy import save_file

    dst = Path(dst)
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())):
        if not overwrite:
            raise CheckpointError(
                f"{dst}: already exists and is not empty (pass overwrite=True to replace it)"
            )
        if not _is_whisperms(dst):
            raise CheckpointError(
                f"{dst}: refusing to overwrite, it is not a whisperms checkpoint folder"
            )
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.partial-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
    except OSError as e:
        raise CheckpointError(
            f"{dst}: cannot create the checkpoint folder: {e.strerror or e}"
        ) from None
    try:
        np_dtype = SAVE_DTYPES[dtype]
        save_file(
            {k: np.ascontiguousarray(v, dtype=np_dtype) for k, v in ckpt.state.items()},
            str(tmp / WEIGHTS_FILE),
        )
        shutil.copyfile(ckpt.tokenizer_path, tmp / TOKENIZER_FILE)
        config = {
            "format_version": FORMAT_VERSION,
            "name": ckpt.name,
            "dims": ckpt.dims.to_dict(),
            "alignment_heads": ckpt.alignment_heads,
            "dtype": dtype,
            "source": ckpt.source,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _user_file_modes(tmp)
        _move_into_place(tmp, dst)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise CheckpointError(
                f"{dst}: cannot write the checkpoint: {e.strerror or e}"
                f"{f' ({e.filename})' if e.filename else ''}"
            ) from None
        raise
    return dst


def _user_file_modes(folder: Path):
    """Give every file in `folder` the mode a file the user creates gets (0o666 minus the umask):
    safetensors creates its file 0o600, which would leave a converted model unreadable to the user's
    group."""
    from .writers import _umask

    mode = 0o666 & ~_umask()
    for path in folder.iterdir():
        path.chmod(mode)


def _is_whisperms(folder: Path) -> bool:
    try:
        return detect_format(folder) == "whisperms"
    except CheckpointError:
        return False


def _move_into_place(tmp: Path, dst: Path):
    if not dst.exists():
        tmp.rename(dst)
        return
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
    dst.rename(old)
    try:
        tmp.rename(dst)
    except OSError:
        old.rename(dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- Loading into the network
# --------------------------------------------------------------------------------------


def assign_state(model, state: dict):
    """Load `state` into a `whisperms.model.Whisper` one-to-one: every parameter, equal shapes,
    nothing left over.

    All checks run before any parameter is written; a mismatch raises CheckpointError naming the
    first offender.
    """
    import mindspore as ms

    params = list(model.parameters_and_names())
    for name, param in params:
        if name not in state:
            raise CheckpointError(f"missing parameter {name}")
        have, want = tuple(state[name].shape), tuple(param.shape)
        if have != want:
            raise CheckpointError(f"shape mismatch for {name}: checkpoint {have} vs model {want}")
    known = {name for name, _ in params}
    for name in state:
        if name not in known:
            raise CheckpointError(f"unexpected tensor {name}")
    np_types = {ms.float32: np.float32, ms.float16: np.float16}
    for name, param in params:
        array = np.ascontiguousarray(state[name], dtype=np_types.get(param.dtype, np.float32))
        # a view of the file or of the caller's array
        if not (array.flags.owndata and array.flags.writeable):
            array = array.copy()
        # from_numpy shares the array's memory; Tensor(array) would copy the whole checkpoint once
        # more
        tensor = ms.Tensor.from_numpy(array)
        # e.g. bfloat16
        param.set_data(tensor if param.dtype in np_types else tensor.astype(param.dtype))
    return model
