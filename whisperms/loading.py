"""`load_model`: wires a checkpoint, the network built for the chosen runtime, and its compiled
entry points."""

import os
from pathlib import Path

from . import device as devices
from . import sigint
from .convert import read_checkpoint
from .errors import OptionsError
from .hub import check_release, resolve
from .inference import Inference
from .model import Whisper
from .state_assign import assign_state
from .tokenizer import check_tokenizer_file, prefetch


class WhisperModel(Whisper):
    """What `load_model` returns: the network with its checkpoint's name, tokenizer and alignment
    heads, the runtime it was built for, and openai's convenience methods (`transcribe`, `decode`,
    `detect_language`)."""

    def __init__(
        self, dims, runtime: devices.Runtime, name=None, tokenizer_path=None, alignment_heads=None
    ):
        super().__init__(
            dims, runtime.attn_implementation, runtime.conv, devices.DTYPES[runtime.dtype]
        )
        self.runtime = runtime
        self.name = name  # "tiny.en", ...
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self.alignment_heads = alignment_heads
        self._inference = None

    @property
    def inference(self):
        """The compiled entry points (inference.py), built on first use."""
        if self._inference is None:
            self._inference = Inference(self, self.runtime, compiled=self.runtime.jit)
        return self._inference

    @sigint.keeps  # PyNative work outside the graphs too
    def decode(self, mel, options=None, **kwargs):
        from .decoding import decode

        return decode(self, mel, options, **kwargs)

    @sigint.keeps  # PyNative work outside the graphs too
    def detect_language(self, mel):
        from .decoding import detect_language

        return detect_language(self, mel)

    @sigint.keeps  # PyNative work outside the graphs too
    def transcribe(self, audio, **kwargs):
        from .transcribe import transcribe

        return transcribe(self, audio, **kwargs)


def build_model(checkpoint, runtime: devices.Runtime, where=None) -> WhisperModel:
    """A WhisperModel for `runtime` holding `checkpoint`'s weights (converted to the runtime's
    dtype); `where`: the folder read, which errors name."""
    model = WhisperModel(
        checkpoint.dims,
        runtime,
        checkpoint.name,
        checkpoint.tokenizer_path,
        checkpoint.alignment_heads,
    )
    if checkpoint.tokenizer_path:
        prefetch(checkpoint.tokenizer_path)  # parsed while the weights are assigned
    # strict, one-to-one; each tensor in its parameter's dtype
    assign_state(model, checkpoint.state, where=where)
    if checkpoint.tokenizer_path:
        # a file that does not parse, or another vocabulary's, fails the load, not the first decode
        check_tokenizer_file(checkpoint.tokenizer_path, model.is_multilingual, model.dims.n_vocab)
    model.set_train(False)
    return model


def load_model(
    name_or_path,
    device=None,
    download_root=None,
    in_memory=False,
    *,
    dtype=None,
    attn_implementation="auto",
    threads=None,
    jit=True,
) -> WhisperModel:
    """Load a model by name ("tiny.en", "base", ..., "large-v3-turbo") or from a whisperms, Hugging
    Face or CTranslate2 folder (the latter two converted in memory). Parameters load strictly,
    one-to-one. The first four parameters are openai's `whisper.load_model`'s.

    device: None (Ascend when MindSpore reports one, else CPU), "CPU" or "Ascend". download_root:
    where named models are found and converted (default: weights_root()). in_memory: openai's; the
    weights are read whole into memory either way. dtype: None (float16 on Ascend, float32 on CPU),
    "float16" or "float32". attn_implementation: "auto" (flash_attention_2 on Ascend, eager
    elsewhere), "eager" or "flash_attention_2" (Ascend only). threads: CPU cores to use (None: all).
    jit=False runs everything eagerly (PyNative): much slower, the reference the compiled path is
    tested against. The choices are on `model.runtime`.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        # Path("") is the current folder, and None or a number a TypeError deep in pathlib
        raise OptionsError(
            f"load_model needs a model name or a checkpoint folder, got {name_or_path!r}"
        )
    if not isinstance(in_memory, (bool, int)):
        raise OptionsError(f"in_memory must be True or False, got {in_memory!r}")
    runtime = devices.select(device, dtype, attn_implementation, jit, threads)
    folder = resolve(name_or_path, download_root)
    checkpoint = read_checkpoint(folder)
    check_release(name_or_path, folder, checkpoint.dims)
    return build_model(checkpoint, runtime, where=folder)
