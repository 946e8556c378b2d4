"""Checkpoint folders -> whisperms checkpoints, and the strict load into the network.

Readers for CTranslate2 (`model.bin`), Hugging Face (`model.safetensors`, possibly sharded) and
whisperms folders all return a `Checkpoint` whose state uses openai's parameter names, which equal
the Cell parameter names of `whisperms.model.Whisper`, mapped through the name maps of
state_layout.py; tensor_files.py reads the files' tensors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint_folder import (
    PARTIAL,
    claimed,
    contents,
    fill_in_place,
    is_mount_point,
    move_into_place,
    remove_abandoned,
    scratch,
    user_file_modes,
)
from .errors import CheckpointError, OptionsError, warn
from .model import ModelDimensions
from .released import model_name
from .state_layout import CT2_TIED_OUTPUT, HF_TIED_OUTPUT, layout, state_shapes
from .tensor_files import read_ct2_variables, read_safetensors
from .tokenizer import check_tokenizer_file

FORMAT_VERSION = 1  # of the whisperms folder layout written by save_checkpoint
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CT2_WEIGHTS_FILE = "model.bin"
HF_INDEX_FILE = "model.safetensors.index.json"
HF_GENERATION_FILE = "generation_config.json"
SAVE_DTYPES = {"float32": np.float32, "float16": np.float16}
# Multilingual models have this many tokens or more (English-only ones 51864).
MULTILINGUAL_VOCAB = 51865


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

    def __post_init__(self):
        where = (self.source or {}).get("path", "checkpoint")
        for side in ("audio", "text"):
            width = getattr(self.dims, f"n_{side}_state")
            heads = getattr(self.dims, f"n_{side}_head")
            # the shapes cannot tell the head count: a wrong one failed deep inside MindSpore
            if heads < 1 or width % heads:
                raise CheckpointError(
                    f"{where}: n_{side}_head {heads} does not divide n_{side}_state {width}"
                )
        if self.alignment_heads is None:
            # openai's default where a checkpoint names none: every head of the upper half
            layers, heads = self.dims.n_text_layer, self.dims.n_text_head
            upper = range(layers // 2, layers)
            self.alignment_heads = [[layer, h] for layer in upper for h in range(heads)]


# --- Detection and dispatch
# ----------------------------------------------------------------------------------------


def detect_format(folder) -> str:
    """ "whisperms", "huggingface" or "ctranslate2" for a checkpoint folder; CheckpointError
    otherwise."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix in (".pt", ".pth"):  # openai-whisper's: a torch pickle
        raise CheckpointError(
            f"{folder}: a torch checkpoint (openai-whisper's .pt), which whisperms cannot read "
            "without torch; give a Hugging Face, CTranslate2 or whisperms folder"
        )
    if folder.is_file():  # model.safetensors or model.bin given for its folder
        raise CheckpointError(f"{folder}: a file; give the checkpoint folder it is in")
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
    # a destination that cannot be written is said before gigabytes are read
    _check_dtype(dtype)
    _destination(dst, overwrite)
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


def _check_state(state: dict, dims: ModelDimensions, where):
    """Every tensor of `dims` present with its shape, nothing else; the first offender is named."""
    expected = state_shapes(dims)
    for name, shape in expected.items():
        if name not in state:
            raise CheckpointError(f"{where}: missing tensor {name}")
        if state[name].dtype.kind != "f":  # integers cast to float are not weights
            raise CheckpointError(
                f"{where}: tensor {name} holds {state[name].dtype} values, not floating point "
                "weights"
            )
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"expected {shape} for the model's dims"
            )
    for name in state:
        if name not in expected:
            raise CheckpointError(f"{where}: unexpected tensor {name}")


def _alignment_heads(heads, dims: ModelDimensions, where, strict=True):
    """The checkpoint's alignment heads, checked against its dimensions. A Hugging Face or
    CTranslate2 folder's list may be another model's (a distilled model shipping its teacher's
    generation_config.json): not `strict`, such a list is said in a warning and openai's default
    used, so the model still transcribes (transformers loads it too)."""
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
        within = f"{dims.n_text_layer} layers x {dims.n_text_head} heads"
        if strict:
            raise CheckpointError(
                f"{where}: alignment_heads must be [layer, head] pairs within {within}"
            )
        warn(
            f"{where}: alignment_heads are not [layer, head] pairs within this model's {within} "
            "(another model's list?): word timestamps use every head of the upper half instead"
        )
        return None
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


def read_ctranslate2(folder) -> Checkpoint:
    folder = Path(folder)
    bin_path = folder / CT2_WEIGHTS_FILE
    if not bin_path.is_file():
        raise CheckpointError(f"{folder}: not a CTranslate2 folder (expected {CT2_WEIGHTS_FILE})")
    variables, _, header = read_ct2_variables(bin_path)
    dims = _ct2_dims(variables, bin_path)
    state, used = {}, set()
    for e in layout(dims):
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
    tied = variables.get(CT2_TIED_OUTPUT)
    if tied is not None and not np.array_equal(
        tied, state["decoder.token_embedding.weight"], equal_nan=True
    ):
        raise CheckpointError(
            f"{bin_path}: {CT2_TIED_OUTPUT} differs from the token embedding "
            f"(untied output projections are not supported)"
        )
    used.add(CT2_TIED_OUTPUT)
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
        strict=False,
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
    names = {e.hf: e.name for e in layout(dims)}
    state = {}
    for hf_name, value in tensors.items():
        key = "model." + hf_name if hf_name.startswith(("encoder.", "decoder.")) else hf_name
        if key in names:
            state[names[key]] = value
        elif key != HF_TIED_OUTPUT:
            raise CheckpointError(f"{where}: unexpected tensor {hf_name}")
    absent = [e.hf for e in layout(dims) if e.name not in state]
    if absent:
        raise CheckpointError(f"{where}: missing tensor {absent[0]}")
    tied = tensors.get(HF_TIED_OUTPUT)
    embedding = state.get("decoder.token_embedding.weight")
    if tied is not None and embedding is not None and not np.array_equal(tied, embedding):
        raise CheckpointError(
            f"{where}: {HF_TIED_OUTPUT} differs from decoder.embed_tokens.weight "
            f"(untied output projections are not supported)"
        )
    _check_state(state, dims, where)
    generation_path = folder / HF_GENERATION_FILE
    generation = _read_json(generation_path) if generation_path.is_file() else {}
    heads = _alignment_heads(
        generation.get("alignment_heads") if isinstance(generation, dict) else None,
        dims,
        generation_path,
        strict=False,
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
    """Write `ckpt` as a whisperms folder `dst`, built in a temporary folder, then put in place
    (checkpoint_folder.py): renamed, or, into an empty folder or a mount point, moved in file by
    file with config.json last.

    An existing non-empty `dst` is replaced only with `overwrite=True`, and only if it is a
    whisperms checkpoint.
    """
    _check_dtype(dtype)
    from safetensors.numpy import save_file

    dst = Path(dst)
    # a file cut short, or another vocabulary's, would be copied as it is
    check_tokenizer_file(
        ckpt.tokenizer_path, ckpt.dims.n_vocab >= MULTILINGUAL_VOCAB, ckpt.dims.n_vocab
    )
    real, how = _destination(dst, overwrite)
    in_place = how in ("fill", "refill")
    # the temporary folder's lock is held until it is in place: a folder whose lock is free was
    # left by a conversion that died (checkpoint_folder.remove_abandoned)
    with ExitStack() as held:
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            tmp = held.enter_context(
                claimed(scratch(real if in_place else real.parent, real.name, PARTIAL))
            )
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
            user_file_modes(tmp)
            if in_place:
                fill_in_place(tmp, real, CONFIG_FILE, replacing=how == "refill")
            else:
                move_into_place(tmp, real, overwrite)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, CheckpointError):
                raise
            if isinstance(e, OSError):
                raise CheckpointError(
                    f"{dst}: cannot write the checkpoint: {e.strerror or e}"
                    f"{f' ({e.filename})' if e.filename else ''}"
                ) from None
            if isinstance(e, Exception):  # safetensors' own (a full disk: its SafetensorError)
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise CheckpointError(f"{dst}: cannot write the checkpoint: {reason}") from None
            raise
    return dst


def is_whisperms(folder: Path) -> bool:
    try:
        return detect_format(folder) == "whisperms"
    except CheckpointError:
        return False


def _check_dtype(dtype):
    if dtype not in SAVE_DTYPES:
        raise OptionsError(f"dtype must be one of {', '.join(SAVE_DTYPES)}, not {dtype!r}")


def _destination(dst, overwrite: bool):
    """The folder a checkpoint is written to (a symbolic link's target), and how: "new" (renamed
    into place), "replace" (an earlier checkpoint set aside by a rename), or, where no rename can
    land, "fill" (an empty folder, filled in place) and "refill" (a mount point holding an earlier
    checkpoint, replaced file by file). A CheckpointError where it may not be written."""
    real = Path(os.path.realpath(dst))
    remove_abandoned(real)
    if not real.exists():
        return real, "new"
    if not real.is_dir():  # a folder is written there, with or without --overwrite
        raise CheckpointError(f"{dst}: is a file, not a folder")
    try:
        held = contents(real)
    except OSError as e:
        raise CheckpointError(f"{dst}: cannot read the folder: {e.strerror or e}") from None
    if not held:  # other conversions' temporary folders aside: the first to end fills it
        return real, "fill"
    if not overwrite:
        raise CheckpointError(
            f"{dst}: already exists and is not empty (overwrite=True, --overwrite in the "
            "CLI, replaces it)"
        )
    # a folder holding only checkpoint files but no config.json: a replacement stopped midway
    partial = set(held) <= {WEIGHTS_FILE, TOKENIZER_FILE}
    if not partial and not is_whisperms(dst):
        raise CheckpointError(
            f"{dst}: refusing to overwrite, it is not a whisperms checkpoint folder"
        )
    return real, "refill" if is_mount_point(real) else "replace"
