"""The VAD weight file: a small safetensors file shipped in whisperms/assets, written by
vad/convert.py.

The file carries a SHA-256 of its tensors in its metadata, so flipped bytes inside the data (which a
safetensors header check cannot see) are reported as corruption instead of giving wrong
probabilities. Tensors are written in name order with a sorted header, so converting the same ONNX
file twice gives the same bytes.
"""

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..tensor_files import read_safetensors
from .model import ENCODER_CHANNELS, HIDDEN, KERNEL, N_BINS, N_FFT

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WEIGHTS_FILE = "silero_vad_v6.safetensors"
DEFAULT_WEIGHTS = ASSETS / WEIGHTS_FILE
# the metadata's "format": what the file holds and for which network
FORMAT = "whisperms-silero-vad-v6-16k"


def state_shapes() -> dict:
    """Name -> shape of every tensor of the network (the Cells' parameter names, Silero's PyTorch
    names)."""
    shapes = {"encoder.feature_extractor.forward_basis_buffer": (2 * N_BINS, 1, N_FFT)}
    for i, (n_in, n_out, _) in enumerate(ENCODER_CHANNELS):
        shapes[f"encoder.conv_layers.{i}.weight"] = (n_out, n_in, KERNEL)
        shapes[f"encoder.conv_layers.{i}.bias"] = (n_out,)
    shapes.update(
        {
            "decoder.rnn.weight_ih": (4 * HIDDEN, HIDDEN),
            "decoder.rnn.weight_hh": (4 * HIDDEN, HIDDEN),
            "decoder.rnn.bias_ih": (4 * HIDDEN,),
            "decoder.rnn.bias_hh": (4 * HIDDEN,),
            "decoder.conv1d.weight": (1, HIDDEN, 1),
            "decoder.conv1d.bias": (1,),
        }
    )
    return shapes


def check_state(state: dict, where):
    """Every tensor present with its shape, finite, and nothing else; the first offender is
    named."""
    expected = state_shapes()
    for name, shape in expected.items():
        if name not in state:
            raise CheckpointError(f"{where}: missing VAD tensor {name}")
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                f"{where}: VAD tensor {name} has shape {tuple(state[name].shape)}, expected {shape}"
            )
        if not np.all(np.isfinite(state[name])):
            raise CheckpointError(f"{where}: VAD tensor {name} has non-finite values")
    for name in state:
        if name not in expected:
            raise CheckpointError(f"{where}: unexpected VAD tensor {name}")


def state_digest(state: dict) -> str:
    """SHA-256 over names, shapes and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.ascontiguousarray(state[name], dtype="<f4")
        digest.update(f"{name}:{list(array.shape)}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_weights(state: dict, path, source: str = ""):
    """Write `state` (float32) as safetensors with the format, digest and source in its metadata."""
    check_state(state, path)
    arrays = {name: np.ascontiguousarray(state[name], dtype="<f4") for name in sorted(state)}
    header = {"__metadata__": {"format": FORMAT, "sha256": state_digest(arrays), "source": source}}
    offset = 0
    for name, array in arrays.items():
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for array in arrays.values():
            f.write(array.tobytes())
    os.replace(tmp, path)


def _metadata(path: Path) -> dict:
    """The header's __metadata__ of a file read_safetensors has already validated."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length).decode("utf-8")).get("__metadata__") or {}


def read_weights(path=None) -> dict:
    """Name -> float32 array of a VAD weight file (default: the one shipped with whisperms), checked
    for format, digest, names and shapes; a one-line CheckpointError names the file and the problem
    otherwise."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"VAD weight file not found: {path} (reinstall whisperms, or write it with "
            f"`python -m whisperms.vad.convert`)"
        )
    state = read_safetensors(path)
    metadata = _metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a whisperms Silero VAD weight file (metadata format "
            f"{metadata.get('format')!r}, expected {FORMAT!r})"
        )
    state = {name: np.asarray(array, dtype=np.float32) for name, array in state.items()}
    if state_digest(state) != metadata.get("sha256"):
        raise CheckpointError(
            f"{path}: corrupted VAD weight file (its tensors do not match the SHA-256 "
            f"in its metadata)"
        )
    check_state(state, path)
    return state
