"""Checks of DecodingOptions: each field of its kind and in its range, the combinations that
cannot work, and token ids against a model's vocabulary; and of a mel given to decode: its shape
and values. Each an OptionsError that says which.
"""

import math
import numbers
from dataclasses import replace
from typing import Optional, Sequence, Tuple

import numpy as np

from .audio import N_FRAMES
from .errors import OptionsError, warn
from .tokenizer import check_task

# The widest beam search and the most samples per window taken, a bound of sense (openai's and
# faster-whisper's defaults are 5): every row holds a cache of the context and a row of logits, and
# a width far beyond any use ran the machine out of memory (the kernel killing the process, or a
# neighbour) instead of failing with an error. It does not make every width fit a machine.
MAX_ROWS_PER_WINDOW = 128


def _check_types(options):
    """Each field of the kind it must be: decode() takes DecodingOptions as given (transcribe()
    has converted them), and a wrong kind failed deep inside, or decoded wrongly (a negative token
    id picked a token from the end of the vocabulary)."""
    for name in ("sample_len", "best_of", "beam_size"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, numbers.Integral) or _is_bool(value)):
            raise OptionsError(f"{name} must be a whole number, got {value!r}")
    for name in ("patience", "length_penalty", "max_initial_timestamp"):
        value = getattr(options, name)
        if value is not None and (
            not isinstance(value, numbers.Real) or _is_bool(value) or not math.isfinite(value)
        ):
            raise OptionsError(f"{name} must be a finite number, got {value!r}")
    penalty = options.repetition_penalty
    if (
        not isinstance(penalty, numbers.Real)
        or _is_bool(penalty)
        or not math.isfinite(penalty)
        or penalty <= 0
    ):
        raise OptionsError(f"repetition_penalty must be a finite number > 0, got {penalty!r}")
    size = options.no_repeat_ngram_size
    if not isinstance(size, numbers.Integral) or _is_bool(size) or size < 0:
        raise OptionsError(f"no_repeat_ngram_size must be an integer >= 0, got {size!r}")
    if options.max_initial_timestamp is not None and options.max_initial_timestamp < 0:
        raise OptionsError(
            f"max_initial_timestamp must be >= 0 seconds, got {options.max_initial_timestamp}"
        )
    for name in ("suppress_blank", "without_timestamps"):
        if not _is_bool(getattr(options, name)):
            raise OptionsError(f"{name} must be True or False, got {getattr(options, name)!r}")
    if options.fp16 is not None and not _is_bool(options.fp16):
        raise OptionsError(f"fp16 must be True, False or None, got {options.fp16!r}")
    for name in ("language", "task", "hotwords"):
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            raise OptionsError(f"{name} must be a string, got {value!r}")
    if options.hotwords is not None:
        check_text("hotwords", options.hotwords)
    token_ids(options.suppress_tokens, "suppress_tokens", allow=(-1,))
    for name in ("prompt", "prefix"):
        if isinstance(getattr(options, name), str):
            check_text(name, getattr(options, name))
        else:
            token_ids(getattr(options, name), name)


def check_text(name: str, text: str):
    """An OptionsError for a string the tokenizer cannot take: one holding characters that are no
    text (bytes that were not UTF-8, as Python keeps them from a command line given in another
    encoding)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise OptionsError(
            f"{name} is not valid text: character {error.start + 1} is a byte that is not UTF-8 "
            "(give the text in UTF-8)"
        ) from None


def check_fp16(model, fp16: Optional[bool]):
    """A warning when openai's fp16 asks for a precision other than the model's."""
    if fp16 is not None and fp16 != (model.runtime.dtype == "float16"):
        warn(
            f"fp16={fp16} has no effect: this model runs in {model.runtime.dtype} (load_model's "
            "dtype, the CLI's --dtype, chooses)"
        )


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def token_ids(value, name: str, allow=()) -> Tuple[int, ...]:
    """Token ids given as a sequence of ints or a comma-separated string: each >= 0 or in `allow`;
    an OptionsError if not. Whether they are below the vocabulary size is the model's to check."""
    if value is None:
        return ()
    ids = value
    if isinstance(value, str):
        try:
            ids = [int(t) for t in value.split(",") if t.strip()]
        except ValueError:
            raise OptionsError(f"{name} must be comma-separated token ids, got '{value}'") from None
    if not isinstance(ids, (Sequence, np.ndarray)) or not all(
        isinstance(t, numbers.Integral) and not _is_bool(t) and (t >= 0 or t in allow) for t in ids
    ):
        raise OptionsError(
            f"{name} must be token ids (integers >= 0{''.join(f' or {a}' for a in allow)}), "
            f"got {value!r}"
        )
    return tuple(int(t) for t in ids)


def check_vocabulary(options, n_vocab: int):
    """An OptionsError for a token id in suppress_tokens, prompt or prefix that a model of `n_vocab`
    tokens does not have (MindSpore's Gather failed on it, and the model with it), or for every
    token suppressed."""
    for name in ("suppress_tokens", "prompt", "prefix"):
        value = getattr(options, name)
        if name == "suppress_tokens" or not isinstance(value, str):
            ids = token_ids(value, name, allow=(-1,) if name == "suppress_tokens" else ())
            if ids and max(ids) >= n_vocab:
                problem = (
                    f"token id {max(ids)} is beyond this model's vocabulary of {n_vocab} tokens"
                )
                raise OptionsError(f"{name}: {problem}")
            if name == "suppress_tokens" and len(set(ids) - {-1}) >= n_vocab:
                raise OptionsError(
                    f"suppress_tokens: all {n_vocab} tokens suppressed: none is left"
                )


def verify_options(options):
    _check_types(options)
    if (
        not isinstance(options.temperature, numbers.Real)
        or _is_bool(options.temperature)
        or not np.isfinite(options.temperature)
        or options.temperature < 0
    ):
        raise OptionsError(f"temperature must be a finite number >= 0, got {options.temperature!r}")
    if options.sample_len is not None and options.sample_len < 1:
        raise OptionsError(f"sample_len must be at least 1, got {options.sample_len}")
    if options.beam_size is not None and options.best_of is not None:
        raise OptionsError("beam_size and best_of can't be given together")
    if options.temperature == 0 and options.best_of is not None:
        raise OptionsError("best_of with greedy sampling (temperature 0) is not compatible")
    if options.patience is not None and options.beam_size is None:
        raise OptionsError("patience requires beam_size to be given")
    if options.length_penalty is not None and not 0 <= options.length_penalty <= 1:
        raise OptionsError("length_penalty (alpha) should be a value between 0 and 1")
    check_task(options.task)
    for name in ("beam_size", "best_of"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise OptionsError(f"{name} must be at least 1, got {value}")
        if value is not None and value > MAX_ROWS_PER_WINDOW:
            raise OptionsError(f"{name} must be at most {MAX_ROWS_PER_WINDOW}, got {value}")
    if options.patience is not None and not math.isfinite(options.beam_size * options.patience):
        raise OptionsError(
            f"patience {options.patience} is too large: the count of finished candidates it "
            "asks for is not finite"
        )
    if options.patience is not None and round(options.beam_size * options.patience) < 1:
        raise OptionsError(f"patience {options.patience} leaves no finished candidate to wait for")
    # token ids as a numpy array: a list, as the code reads them (an array has no truth value)
    arrays = ("prompt", "prefix", "suppress_tokens")
    lists = {
        n: getattr(options, n).tolist()
        for n in arrays
        if isinstance(getattr(options, n), np.ndarray)
    }
    return replace(options, **lists) if lists else options


def mel_array(mel) -> np.ndarray:
    """mel as a float32 array, or an OptionsError (text, ragged lists)."""
    try:
        return np.asarray(mel, np.float32)
    except (TypeError, ValueError) as error:  # text, ragged lists
        reason = str(error).splitlines()[0]
        raise OptionsError(f"mel must be an array of numbers: {reason}") from None


def checked_mel(model, mel) -> np.ndarray:
    """mel as a batch of windows (B, n_mels, N_FRAMES), or an OptionsError saying what it is."""
    mel = mel_array(mel)
    if mel.ndim == 2:
        mel = mel[None]
    if mel.ndim != 3 or len(mel) == 0:
        raise OptionsError(
            f"mel must be (n_mels, {N_FRAMES}) or a batch (B, n_mels, {N_FRAMES}), got shape "
            f"{tuple(mel.shape)}"
        )
    if mel.shape[-2:] != (model.dims.n_mels, N_FRAMES):
        raise OptionsError(
            f"mel must be (n_mels={model.dims.n_mels}, {N_FRAMES}) for one window, got "
            f"{tuple(mel.shape[-2:])}: use pad_or_trim on the audio or the mel first"
        )
    if not np.isfinite(mel).all():
        raise OptionsError(
            "mel holds NaN or infinite values: compute it from finite audio (log_mel_spectrogram)"
        )
    return mel
