"""The Python API given arguments of the wrong kind or beyond what fits: NumPy's numbers taken
as numbers, wrong kinds named in one line, word timing of a text longer than the context, and a
checkpoint whose weights were damaged."""

import shutil
import warnings

import numpy as np
import pytest

from conftest import DATA

SHORT = DATA / "ljspeech_LJ001-0002.wav"


@pytest.fixture(scope="module")
def short_audio():
    from whisperms.audio import load_audio

    return load_audio(SHORT)


@pytest.fixture(scope="module")
def short_text(tiny_en_model, short_audio):
    text = tiny_en_model.transcribe(short_audio).text
    assert text == " in being comparatively modern."
    return text


def test_numbers_of_numpy_are_numbers(tiny_en_model, short_audio, short_text):
    """NumPy's scalars where numbers are taken (decode's temperature, the VAD's parameters): they
    were refused with messages such as "must be a finite number >= 0, got 0.5"."""
    from whisperms import DecodingOptions
    from whisperms.audio import log_mel_spectrogram, pad_or_trim
    from whisperms.decoding_checks import verify_options
    from whisperms.vad import VadOptions

    verify_options(DecodingOptions(temperature=np.float32(0.5)))
    mel = log_mel_spectrogram(pad_or_trim(short_audio))
    assert tiny_en_model.decode(mel, temperature=np.float32(0.0)).text == short_text.strip()
    options = VadOptions(threshold=np.float32(0.25), min_silence_duration_ms=np.int64(500))
    assert (options.threshold, options.min_silence_duration_ms) == (0.25, 500)
    assert type(options.threshold) is float and type(options.min_silence_duration_ms) is int


def test_word_timing_of_a_text_longer_than_the_context_takes(tiny_en_model, short_audio):
    """A window whose text leaves no room in the 448-token context for the alignment pass's
    sequence (here a run-on window: end of text suppressed, max_new_tokens past the context): its
    words are timed up to what fits, with a warning (it failed deep in MindSpore after the whole
    decode)."""
    from whisperms import WhispermsWarning

    options = dict(without_timestamps=True, suppress_tokens=[-1, 50256], temperature=0.0)
    options.update(compression_ratio_threshold=None, logprob_threshold=None, max_new_tokens=1000)
    with pytest.warns(WhispermsWarning, match="word timestamps: a window's text of") as said:
        result = tiny_en_model.transcribe(short_audio, word_timestamps=True, **options)
    assert "more than the 445 the model can align" in str(said[0].message)
    words = [w for s in result.segments for w in s.words]
    assert len(words) > 100 and all(w["end"] >= w["start"] >= 0 for w in words)


def test_arguments_of_the_wrong_kind_are_named(tiny_en_model, short_audio, short_text):
    """What fell through to a library's error or was taken silently: options given as a dict
    (dataclasses.replace's TypeError), a datasets row as audio ("dtype object"), pad_or_trim's
    length and axis (NumPy's errors, or an empty array for a negative length), faster-whisper's
    VadOptions (refused as "got VadOptions"), translate on an English-only model (no word), a
    detection threshold beyond a probability, a repetition penalty beyond float32 (NumPy's overflow
    warnings)."""
    from faster_whisper.vad import VadOptions as FasterWhisperVadOptions

    from whisperms import AudioError, OptionsError, WhispermsWarning
    from whisperms.audio import log_mel_spectrogram, pad_or_trim
    from whisperms.vad import VadOptions
    from whisperms.vad.options import vad_options

    mel = log_mel_spectrogram(pad_or_trim(short_audio))
    with pytest.raises(OptionsError) as info:
        tiny_en_model.decode(mel, {"beam_size": 2})
    assert str(info.value) == (
        "options must be a DecodingOptions or a list of one per window (or the fields as "
        "keywords), got dict"
    )
    with pytest.raises(AudioError) as info:
        tiny_en_model.transcribe({"array": short_audio, "sampling_rate": 16000})
    assert str(info.value) == "audio array is a dict: pass its 'array', at 16 kHz"
    for length, axis in ((1.5, -1), (-5, -1), (100, 3)):
        with pytest.raises(ValueError, match="^pad_or_trim's"):
            pad_or_trim(short_audio, length, axis=axis)
    theirs = FasterWhisperVadOptions(threshold=0.4, min_silence_duration_ms=500)
    assert vad_options(theirs) == VadOptions(threshold=0.4, min_silence_duration_ms=500)
    with pytest.warns(WhispermsWarning, match="^task 'translate' has no effect: this model is"):
        assert tiny_en_model.transcribe(short_audio, task="translate").text == short_text
    with pytest.raises(OptionsError, match="^language_detection_threshold must be a finite"):
        tiny_en_model.transcribe(short_audio, language_detection_threshold=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tiny_en_model.transcribe(short_audio, repetition_penalty=1e300, temperature=0.0)


def test_a_checkpoint_with_damaged_weights_is_refused(tmp_path, tiny_en_ct2_dir):
    """Bytes of model.bin overwritten (NaN in float16: 0xFFFF) in the middle of a tensor: a
    CheckpointError naming it at load (it loaded, and transcribed to nothing)."""
    from whisperms import CheckpointError, load_model

    folder = tmp_path / "damaged"
    shutil.copytree(tiny_en_ct2_dir, folder)
    size = (folder / "model.bin").stat().st_size
    with open(folder / "model.bin", "r+b") as model_bin:
        model_bin.seek(size // 2 & ~1)
        model_bin.write(b"\xff" * 4096)
    with pytest.raises(CheckpointError, match="holds NaN or infinite values: the checkpoint is"):
        load_model(str(folder))


def test_verbose_and_progress_of_the_wrong_kind_are_refused(tiny_en_model, short_audio, capsys):
    """verbose is openai's three-way switch: a string or number was taken as True (segments printed)
    where the caller may have meant otherwise; now one line naming it. NumPy's booleans are
    booleans: np.False_ shows a bar, as False does, not nothing."""
    from whisperms import OptionsError

    for name, value in (("verbose", "yes"), ("verbose", 1), ("progress", "no")):
        with pytest.raises(OptionsError, match=f"^{name} must be True, False or None, got"):
            tiny_en_model.transcribe(short_audio, **{name: value})
    result = tiny_en_model.transcribe(short_audio, verbose=np.bool_(True))
    assert result.text in capsys.readouterr().out
