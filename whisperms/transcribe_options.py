"""transcribe()'s options, checked up front: `transcribe_options` turns openai's (and
faster-whisper's) keyword options into one frozen TranscribeOptions, or an OptionsError naming the
first that cannot work; `check_with_model` checks what needs the model."""

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import CHUNK_LENGTH
from .decoding import DecodingOptions, DecodingTask, model_language
from .decoding_checks import (
    MAX_ROWS_PER_WINDOW,
    check_fp16,
    check_text,
    check_vocabulary,
    token_ids,
    verify_options,
)
from .errors import OptionsError, warn
from .timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from .tokenizer import detect_requested, language_code
from .vad.options import VadOptions, vad_options

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# The batched mode's VAD splits speech at pauses this long (faster-whisper's batched default), so
# that pieces of speech join into windows without cutting words.
BATCH_MIN_SILENCE_MS = 160


@dataclass(frozen=True)
class TranscribeOptions:
    """transcribe()'s own options and the window decoding options, checked: build it with
    `transcribe_options`."""

    temperature: Tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: Optional[float] = 2.4
    logprob_threshold: Optional[float] = -1.0
    no_speech_threshold: Optional[float] = 0.6
    condition_on_previous_text: bool = True
    # faster-whisper's: a window decoded above this temperature starts the next one without a
    # prompt (openai's fixed 0.5)
    prompt_reset_on_temperature: float = 0.5
    # text, or token ids (faster-whisper's: put in as given)
    initial_prompt: Union[str, Tuple[int, ...], None] = None
    carry_initial_prompt: bool = False
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    # seconds: start, end, start, ...; a last end left out is the file's end
    clip_timestamps: Tuple[float, ...] = ()
    hallucination_silence_threshold: Optional[float] = None
    # transcribe only the speech the VAD finds; None: faster-whisper's default for the mode (off
    # in the sequential mode, on in the batched one)
    vad_filter: Optional[bool] = None
    vad_parameters: Optional[VadOptions] = None  # the VAD's options, resolved when it applies
    # windows decoded together (the batched mode, batched.py); None: openai's sequential mode
    batch_size: Optional[int] = None
    # the batched mode's longest piece of speech in seconds (faster-whisper's pipeline's
    # chunk_length); None: a whole window
    chunk_length: Optional[float] = None
    # faster-whisper's: a multilingual model detects each window's language (the batched mode each
    # piece's, always), the given language or not
    multilingual: bool = False
    # faster-whisper's: the language is detected from up to this many windows from the start, the
    # first whose likeliest language is above the threshold deciding (else the one found most often)
    language_detection_segments: int = 1
    language_detection_threshold: float = 0.5
    decoding: DecodingOptions = DecodingOptions()

    @property
    def batched(self) -> bool:
        return self.batch_size is not None

    @property
    def longest_piece(self) -> float:
        """The batched mode's longest piece of speech, seconds: chunk_length, else a window."""
        return self.chunk_length or CHUNK_LENGTH

    @property
    def vad_applies(self) -> bool:
        """The VAD filter is on, and clip_timestamps left at the whole file ("0", as faster-whisper
        requires)."""
        vad = self.batched if self.vad_filter is None else self.vad_filter
        return vad and self.clip_timestamps in ((), (0.0,))

    def at_temperature(self, temperature: float) -> DecodingOptions:
        """The options of one decoding attempt: beam search at temperature 0, best_of sampling above
        (openai)."""
        options = replace(self.decoding, temperature=temperature)
        if temperature > 0:
            return replace(options, beam_size=None, patience=None)
        return replace(options, best_of=None)


_OWN_OPTIONS = {f.name for f in fields(TranscribeOptions)} - {"decoding"}
_DECODING_OPTIONS = {f.name for f in fields(DecodingOptions)} - {"temperature"}
# Numeric options and the values that can work (check_number's keywords); None is "unset" for each
# of them.
_NUMBER_OPTIONS = {
    "compression_ratio_threshold": {},
    "logprob_threshold": {},
    "no_speech_threshold": {},  # as openai takes it: above 1 no window is ever skipped
    "hallucination_silence_threshold": dict(low=0),
    "best_of": dict(low=1, high=MAX_ROWS_PER_WINDOW, integer=True),
    "beam_size": dict(low=1, high=MAX_ROWS_PER_WINDOW, integer=True),
    "sample_len": dict(low=1, integer=True),
    "patience": dict(low=0, strict_low=True),
    "length_penalty": dict(low=0, high=1),
    "max_initial_timestamp": dict(low=0),
    "batch_size": dict(low=1, integer=True),
    "chunk_length": dict(low=0, strict_low=True, high=CHUNK_LENGTH),
}
# faster-whisper's numeric options that always hold a number (None is no value for them)
_SET_NUMBER_OPTIONS = {
    "repetition_penalty": dict(low=0, strict_low=True),
    "no_repeat_ngram_size": dict(low=0, integer=True),
    "language_detection_segments": dict(low=1, integer=True),
    "language_detection_threshold": dict(low=0, high=1),  # a probability
    "prompt_reset_on_temperature": {},
}
# faster-whisper's names for options openai calls otherwise
_ALIASES = {"max_new_tokens": "sample_len", "log_prob_threshold": "logprob_threshold"}
_FLAG_OPTIONS = (
    "condition_on_previous_text",
    "carry_initial_prompt",
    "word_timestamps",
    "suppress_blank",
    "without_timestamps",
    "vad_filter",
    "multilingual",
)
_TEXT_OPTIONS = ("prepend_punctuations", "append_punctuations")
_OPTIONAL_TEXT_OPTIONS = ("initial_prompt", "hotwords")  # a string, or None


def transcribe_options(**kwargs) -> TranscribeOptions:
    """Check transcribe()'s keyword options (openai's names) without a model: an OptionsError names
    the first that cannot work. What needs the model (an English-only model's language, alignment
    heads, token ids beyond the vocabulary) is checked by Transcriber."""
    unknown = sorted(set(kwargs) - _OWN_OPTIONS - _DECODING_OPTIONS - set(_ALIASES))
    if unknown:
        raise OptionsError(f"unknown option {unknown[0]!r}")
    checked = dict(kwargs)
    for alias, name in _ALIASES.items():
        if alias in checked:
            if name in checked:
                raise OptionsError(f"{alias} and {name} are one option: give one of them")
            value = checked.pop(alias)  # None too: log_prob_threshold=None turns the rule off
            checked[name] = check_number(alias, value, optional=True, **_NUMBER_OPTIONS[name])
    for name, limits in _NUMBER_OPTIONS.items():
        if name in checked:
            checked[name] = check_number(name, checked[name], optional=True, **limits)
    for name, limits in _SET_NUMBER_OPTIONS.items():
        if name in checked:
            checked[name] = check_number(name, checked[name], **limits)
    for name in _FLAG_OPTIONS:
        if name == "vad_filter" and checked.get(name, False) is None:
            continue  # the mode's default
        if name in checked and not isinstance(checked[name], (bool, np.bool_)):
            raise OptionsError(f"{name} must be True or False, got {checked[name]!r}")
    if checked.get("initial_prompt") is not None:
        checked["initial_prompt"] = _initial_prompt(checked["initial_prompt"])
    for name in _TEXT_OPTIONS + _OPTIONAL_TEXT_OPTIONS:
        if name == "initial_prompt" and isinstance(checked.get(name), tuple):
            continue
        if (
            name in checked
            and not isinstance(checked[name], str)
            and not (name in _OPTIONAL_TEXT_OPTIONS and checked[name] is None)
        ):
            raise OptionsError(f"{name} must be a string, got {checked[name]!r}")
        if isinstance(checked.get(name), str):
            check_text(name, checked[name])
    if "temperature" in checked:
        checked["temperature"] = _temperatures(checked["temperature"])
    if "clip_timestamps" in checked:
        checked["clip_timestamps"] = _clip_seconds(checked["clip_timestamps"])
    if checked.get("vad_parameters") is not None:
        try:
            checked["vad_parameters"] = vad_options(checked["vad_parameters"])
        except OptionsError as error:
            raise OptionsError(f"vad_parameters: {error}") from None
    language = checked.get("language")
    if language is not None:
        if not isinstance(language, str):
            raise OptionsError(
                f"language must be a code or name such as 'de' or 'German', got {language!r}"
            )
        if detect_requested(language):
            checked["language"] = None
        else:
            language_code(language)  # an OptionsError for an unknown one
    if "suppress_tokens" in checked:
        checked["suppress_tokens"] = _token_ids(
            "suppress_tokens", checked["suppress_tokens"], allow=(-1,)
        )
    for name in ("prompt", "prefix"):
        if not isinstance(checked.get(name), (str, type(None))):
            checked[name] = _token_ids(name, checked[name])
    own = {name: checked.pop(name) for name in list(checked) if name in _OWN_OPTIONS}
    options = TranscribeOptions(**own, decoding=DecodingOptions(**checked))
    if options.batched and options.hallucination_silence_threshold is not None:
        # first: the warning below would send the caller to word_timestamps, which does not help
        raise OptionsError(
            "hallucination_silence_threshold works in the sequential mode only: leave out "
            "batch_size"
        )
    if options.hallucination_silence_threshold is not None and not options.word_timestamps:
        # openai's transcribe and faster-whisper skip silences by the words' times only
        warn("hallucination_silence_threshold has no effect without word_timestamps=True")
        options = replace(options, hallucination_silence_threshold=None)
    detection = ("language_detection_segments", "language_detection_threshold")
    changed = [n for n in detection if getattr(options, n) != getattr(TranscribeOptions, n)]
    if options.batched and changed:
        warn(
            f"{changed[0]} has no effect in the batched mode, which detects each piece's language "
            "from its first window"
        )
    if options.chunk_length not in (None, CHUNK_LENGTH) and not options.batched:
        # faster-whisper's sequential mode reads it as a shorter mel window, which Whisper's
        # encoder does not take (its own 30 s is the window every mode uses: nothing to refuse)
        raise OptionsError(
            "chunk_length works in the batched mode only (the longest piece of speech): give "
            "batch_size"
        )
    if options.chunk_length is not None and options.batched and not options.vad_applies:
        # it bounds the VAD's pieces; clips and the whole input are pieces of any length
        warn(
            "chunk_length has no effect without the VAD filter (vad_filter=True and no "
            "clip_timestamps)"
        )
    if options.vad_parameters is not None and not (options.vad_filter or options.vad_applies):
        # faster-whisper ignores them without a word (vad_filter with clip_timestamps: below)
        warn("vad_parameters has no effect without vad_filter=True")
    if options.vad_applies:
        options = replace(options, vad_parameters=_resolved_vad(options))
    if options.vad_filter and not options.vad_applies:
        warn("vad_filter is ignored when clip_timestamps is given (as in faster-whisper)")
    for temperature in options.temperature:
        # decoding's own rules, for every attempt
        verify_options(options.at_temperature(temperature))
    return options


def _resolved_vad(options: TranscribeOptions) -> VadOptions:
    """The VAD options used: those given, or VadOptions(); in the batched mode faster-whisper's
    (pauses from BATCH_MIN_SILENCE_MS split speech; pieces of speech no longer than a window, or
    than chunk_length, which replaces a max_speech_duration_s given, as in faster-whisper)."""
    if not options.batched:
        return options.vad_parameters or VadOptions()
    longest = options.longest_piece
    if options.vad_parameters is None:
        return VadOptions(
            max_speech_duration_s=longest, min_silence_duration_ms=BATCH_MIN_SILENCE_MS
        )
    # a shorter one cut speech where no pause was, and pieces joined up to a window then broke
    # off mid-sentence at those cuts (faster-whisper's pipeline drops it too)
    return replace(options.vad_parameters, max_speech_duration_s=longest)


def check_number(
    name, value, *, low=None, high=None, integer=False, optional=False, strict_low=False
):
    """`value` as a finite float (or int) within [low, high], or an OptionsError saying what was
    expected."""
    if value is None and optional:
        return None
    kind = numbers.Integral if integer else numbers.Real
    valid = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
    if valid:
        number = int(value) if integer else float(value)
        valid = (
            math.isfinite(number)
            and (low is None or (number > low if strict_low else number >= low))
            and (high is None or number <= high)
        )
    if valid:
        return number
    wanted = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        wanted += (
            f" {'above' if strict_low else 'from'} {low} {'up ' if strict_low else ''}to {high}"
        )
    elif low is not None:
        wanted += f" {'>' if strict_low else '>='} {low}"
    raise OptionsError(f"{name} must be {wanted}{' or None' if optional else ''}, got {value!r}")


def _temperatures(value) -> Tuple[float, ...]:
    """A temperature or a sequence of them (tried in turn): each finite and >= 0."""
    if isinstance(value, (str, bytes)) or not isinstance(
        value, (numbers.Real, Sequence, np.ndarray)
    ):
        raise OptionsError(
            f"temperature must be a number >= 0 or a sequence of them, got {value!r}"
        )
    values = [value] if isinstance(value, numbers.Real) else list(value)
    if not values:
        raise OptionsError(
            "temperature must be a number >= 0 or a non-empty sequence of them, got an empty one"
        )
    return tuple(check_number("temperature", t, low=0) for t in values)


def _clip_seconds(value) -> Tuple[float, ...]:
    """clip_timestamps as seconds: "start,end,..." or a sequence of numbers, each finite and
    >= 0."""
    if isinstance(value, str):
        # blank: the whole file; an empty field ("0,,3") is a typo, as to openai and faster-whisper
        fields = value.split(",") if value.strip() else []
        try:
            value = [float(ts) for ts in fields]
        except ValueError:
            raise OptionsError(
                f"clip_timestamps must be comma-separated seconds, got '{value}'"
            ) from None
    elif isinstance(value, numbers.Real):
        value = [value]
    elif isinstance(value, Sequence) and value and all(isinstance(c, dict) for c in value):
        # faster-whisper's pipeline form: [{"start": s, "end": e}, ...] in seconds
        if any(set(c) != {"start", "end"} for c in value):
            raise OptionsError("clip_timestamps given as dicts need 'start' and 'end' in each")
        value = [ts for clip in value for ts in (clip["start"], clip["end"])]
    if not isinstance(value, (Sequence, np.ndarray)):
        raise OptionsError(
            f"clip_timestamps must be 'start,end,...' seconds or a list of them, got {value!r}"
        )
    seconds = []
    for ts in value:
        if (
            not isinstance(ts, numbers.Real)
            or isinstance(ts, bool)
            or not math.isfinite(ts)
            or ts < 0
        ):
            raise OptionsError(f"clip_timestamps must be finite seconds >= 0, got {ts!r}")
        seconds.append(float(ts))
    # a clip ending before it starts is skipped, as openai and faster-whisper skip it
    return tuple(seconds)


def _token_ids(name, value, allow=()):
    """Token ids as a tuple of ints (decoding.token_ids), None kept."""
    return None if value is None else token_ids(value, name, allow)


def prompt_tokens(tokenizer, prompt) -> List[int]:
    """initial_prompt's tokens: text encoded after a space ("" too is a prompt, " ", as openai and
    faster-whisper take it), token ids as given."""
    if prompt is None:
        return []
    return tokenizer.encode(" " + prompt.strip()) if isinstance(prompt, str) else list(prompt)


def _initial_prompt(prompt):
    """An initial_prompt as text, or as faster-whisper's token ids (a tuple); an OptionsError for
    anything else."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, (Sequence, np.ndarray)):
        raise OptionsError(f"initial_prompt must be a string or token ids, got {prompt!r}")
    return token_ids(prompt, "initial_prompt")


def checked_prompt_tokens(model, tokenizer, prompt) -> List[int]:
    """prompt_tokens of an initial_prompt given apart from the options (a BatchInput's), checked as
    transcribe_options and check_with_model check the options' own: an OptionsError for what is
    neither text nor this model's token ids."""
    prompt = _initial_prompt(prompt)
    if isinstance(prompt, tuple):
        check_vocabulary(DecodingOptions(prompt=prompt), model.dims.n_vocab)
    return prompt_tokens(tokenizer, prompt)


def check_decodable(model, options: TranscribeOptions, language, prompt):
    """An OptionsError for a first window that no decode of `options` could take with this language
    and prompt (the prompt and the prefix past the context), found before any decoding: the batched
    mode met it within a shared batch, where it stopped every input's decode."""
    first = options.at_temperature(options.temperature[0])
    DecodingTask(model, replace(first, language=language, prompt=list(prompt)))


def check_with_model(model, options: TranscribeOptions) -> TranscribeOptions:
    """What transcribe_options cannot check without the model; returns the options as the model
    takes them (an English-only model's language is English: model_language)."""
    decoding = options.decoding
    check_fp16(model, decoding.fp16)
    if options.multilingual and not model.is_multilingual:
        warn("multilingual has no effect: this model is English-only")
        options = replace(options, multilingual=False)
    if decoding.task == "translate" and not model.is_multilingual:
        warn(
            "task 'translate' has no effect: this model is English-only, and the audio is "
            "transcribed as English"
        )
    if decoding.language is not None:
        language = model_language(model, decoding.language, decoding.task)
        if language != language_code(decoding.language):
            options = replace(options, decoding=replace(decoding, language=language))
            decoding = options.decoding
    if options.word_timestamps and not model.alignment_heads:
        raise OptionsError(
            "word_timestamps needs the checkpoint's alignment heads, and this one has none"
        )
    if options.word_timestamps and decoding.task == "translate" and model.is_multilingual:
        # openai's warning: the alignment heads follow the speech, not an English text of it
        warn("word timestamps on translations may not be reliable")
    check_vocabulary(decoding, model.dims.n_vocab)
    if isinstance(options.initial_prompt, tuple):
        check_vocabulary(DecodingOptions(prompt=options.initial_prompt), model.dims.n_vocab)
    return options
