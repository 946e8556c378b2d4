"""VAD options: faster-whisper's VadOptions names, meaning and defaults, validated when built."""

import json
import math
import numbers
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Optional

import numpy as np

from ..errors import OptionsError


@dataclass(frozen=True)
class VadOptions:
    # A window whose speech probability is at least this starts (or continues) speech.
    threshold: float = 0.5
    # A window below this ends speech (after min_silence_duration_ms); between the two thresholds
    # speech continues but does not start. None: max(threshold - 0.15, 0.01).
    neg_threshold: Optional[float] = None
    # Speech shorter than this (before padding) is dropped.
    min_speech_duration_ms: float = 0
    # Speech longer than this is split: at the last silence of more than 98 ms if there was one,
    # else just before this length. inf: never split.
    max_speech_duration_s: float = float("inf")
    # Silence must last this long to end a speech segment.
    min_silence_duration_ms: float = 2000
    # Each speech segment is widened by this much on both sides (by half the gap when neighbours are
    # closer).
    speech_pad_ms: float = 400

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None and field.name == "neg_threshold":
                continue
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, numbers.Real)
                or math.isnan(value)
            ):
                raise OptionsError(f"VAD parameter {field.name} must be a number, got {value!r}")
            # NumPy's numbers as Python's (the options are written out as JSON)
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
            object.__setattr__(self, field.name, value)
            if field.name.endswith("threshold") and not 0.0 <= value <= 1.0:
                raise OptionsError(
                    f"VAD parameter {field.name} must be between 0 and 1, got {value!r}"
                )
            if field.name == "max_speech_duration_s" and value <= 0:
                raise OptionsError(
                    f"VAD parameter max_speech_duration_s must be positive, got {value!r}"
                )
            if field.name.endswith("_ms") and not 0 <= value < math.inf:
                raise OptionsError(
                    f"VAD parameter {field.name} must be a duration of 0 or more milliseconds, "
                    f"got {value!r}"
                )


OPTION_NAMES = tuple(f.name for f in fields(VadOptions))


def vad_options(parameters=None, **kwargs) -> VadOptions:
    """VadOptions from None, a VadOptions, a mapping of its fields or a string (see
    `parse_vad_parameters`), with `kwargs` folded in; an unknown name or a bad value is a one-line
    OptionsError."""
    if isinstance(parameters, str):
        parameters = parse_vad_parameters(parameters)
    if parameters is None:
        parameters = VadOptions()
    elif not isinstance(parameters, VadOptions):
        if is_dataclass(parameters) and not isinstance(parameters, type):
            # faster-whisper's VadOptions (the same fields), or another's: taken by its fields;
            # faster-whisper 1.0's window_size_samples is the model's fixed window here
            parameters = asdict(parameters)
            parameters.pop("window_size_samples", None)
        if not hasattr(parameters, "keys"):
            raise OptionsError(
                f"VAD parameters must be a dict or VadOptions, got {type(parameters).__name__}"
            )
        parameters = _fold(VadOptions(), dict(parameters))
    return _fold(parameters, kwargs)


def _fold(options: VadOptions, changes: dict) -> VadOptions:
    unknown = [name for name in changes if name not in OPTION_NAMES]
    if unknown:
        raise OptionsError(f"unknown VAD parameter '{unknown[0]}': use {', '.join(OPTION_NAMES)}")
    return replace(options, **changes) if changes else options


def parse_vad_parameters(text: str) -> VadOptions:
    """VadOptions from a JSON object ('{"threshold": 0.6}') or comma-separated name=value pairs
    ('threshold=0.6,min_silence_duration_ms=500'; a value of none/null is None), as a command line
    gives them."""
    text = text.strip()
    if text.startswith("{"):
        try:
            values = json.loads(text, object_pairs_hook=_once_each)
        # not ValueError: _once_each's OptionsError is one, and is no syntax error
        except json.JSONDecodeError as e:
            raise OptionsError(f"VAD parameters are not valid JSON: {e}") from None
        if not isinstance(values, dict):
            raise OptionsError("VAD parameters must be a JSON object")
        return vad_options(values)
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise OptionsError(f"VAD parameter '{item}' is not name=value")
        pairs.append((name.strip(), _number(name.strip(), value.strip())))
    return vad_options(_once_each(pairs))


def _once_each(pairs) -> dict:
    """A dict of (name, value) pairs in which no name comes twice: given twice, with the same value
    or another, it is a typo whose meaning one cannot tell, not a value to take the last of."""
    values = {}
    for name, value in pairs:
        if name in values:
            raise OptionsError(f"VAD parameter '{name}' is given twice")
        values[name] = value
    return values


def _number(name, value):
    if value.lower() in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    raise OptionsError(f"VAD parameter {name} must be a number, got {value!r}")
