"""Bad, odd and hostile inputs (issue 16): each class of problem ends in one clean answer, never a
hang, a traceback, a silently wrong transcript or another program's noise.

One test per class, several cases each. CLI errors are checked as the exact stderr lines and exit
status, API errors as the exception type and its one-line message. Usage errors and bad paths run
the CLI in-process or in a subprocess that never loads a model (nor imports MindSpore); the API
cases share the session's tiny.en model.
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
from user_env import user_env

from cli_harness import cli_checks
from conftest import DATA

# 1.9 s, 22.05 kHz mono: " in being comparatively modern."
SHORT = DATA / "ljspeech_LJ001-0002.wav"
JFK = DATA / "jfk_inaugural_1961.flac"  # 11 s, 44.1 kHz stereo
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def cli(*args, env=None, prefix=(), cwd=None):
    """`python -m whisperms ARGS` in a subprocess: (exit status, stdout lines, stderr lines)."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "whisperms", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=user_env(env),
    )
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


@contextmanager
def deadline(seconds):
    """Fail, rather than hang the suite, if the body runs longer than `seconds` (the seek loop is
    Python code)."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def shared_tmp():
    """A temporary folder another user may enter (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="whisperms-hostile-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def can_drop_privileges():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.fixture(scope="module")
def short_audio():
    from whisperms.audio import load_audio

    return load_audio(SHORT)


@pytest.fixture(scope="module")
def short_text(tiny_en_model, short_audio):
    text = tiny_en_model.transcribe(short_audio).text
    assert text == " in being comparatively modern."
    return text


def segments_of(result):
    return [(s.start, s.end, s.text) for s in result.segments]


# --- 1. options never checked (CLI): usage errors, exit 2, before MindSpore is imported
# -------------------------


def test_cli_option_values_and_combinations_are_usage_errors(tmp_path):
    a = SHORT
    e = "whisperms: error: "
    cases = [
        (
            [a, "--temperature", "-1"],
            2,
            [e + "--temperature must be a finite number >= 0, got -1.0"],
        ),
        (
            [a, "--temperature", "nan"],
            2,
            [e + "--temperature must be a finite number >= 0, got nan"],
        ),
        (
            [a, "--temperature", "warm"],
            2,
            [e + "argument --temperature: invalid float value: 'warm' (see whisperms --help)"],
        ),
        (
            [a, "--temperature_increment_on_fallback", "0"],
            2,
            [
                e
                + "--temperature_increment_on_fallback must be a finite number > 0 or None, got 0.0"
            ],
        ),
        (
            [a, "--temperature_increment_on_fallback", "1e-7"],
            2,
            [
                e + "--temperature_increment_on_fallback 1e-07 makes 10000010 temperatures to try "
                "from 0 to 1.0, more than 1001: give a larger increment"
            ],
        ),
        (
            [a, "--best_of", "0"],
            2,
            [e + "--best_of must be an integer from 1 to 128 or None, got 0"],
        ),
        (
            [a, "--repetition_penalty", "0"],
            2,
            [e + "--repetition_penalty must be a finite number > 0, got 0.0"],
        ),
        (
            [a, "--no_repeat_ngram_size", "-2"],
            2,
            [e + "--no_repeat_ngram_size must be an integer >= 0, got -2"],
        ),
        (
            [a, "--max_new_tokens", "0"],
            2,
            [e + "--max_new_tokens must be an integer >= 1 or None, got 0"],
        ),
        (
            [a, "--beam_size", "0"],
            2,
            [e + "--beam_size must be an integer from 1 to 128 or None, got 0"],
        ),
        (
            [a, "--beam_size", "two"],
            2,
            [e + "argument --beam_size: invalid int value: 'two' (see whisperms --help)"],
        ),
        (
            [a, "--patience", "0"],
            2,
            [e + "--patience must be a finite number > 0 or None, got 0.0"],
        ),
        (
            [a, "--length_penalty", "2"],
            2,
            [e + "--length_penalty must be a finite number from 0 to 1 or None, got 2.0"],
        ),
        (
            [a, "--no_speech_threshold", "nan"],
            2,
            [e + "--no_speech_threshold must be a finite number or None, got nan"],
        ),
        (
            [a, "--logprob_threshold", "nan"],
            2,
            [e + "--logprob_threshold must be a finite number or None, got nan"],
        ),
        (
            [a, "--compression_ratio_threshold", "inf"],
            2,
            [e + "--compression_ratio_threshold must be a finite number or None, got inf"],
        ),
        (
            [a, "--suppress_tokens", "1,x"],
            2,
            [e + "--suppress_tokens must be comma-separated token ids, got '1,x'"],
        ),
        (
            [a, "--suppress_tokens", "-5"],
            2,
            [e + "--suppress_tokens must be token ids (integers >= 0 or -1), got '-5'"],
        ),
        (
            [a, "--clip_timestamps", "nan"],
            2,
            [e + "--clip_timestamps must be finite seconds >= 0, got nan"],
        ),
        (
            [a, "--clip_timestamps", "one"],
            2,
            [e + "--clip_timestamps must be comma-separated seconds, got 'one'"],
        ),
        (
            [a, "--clip_timestamps", "0,,3"],
            2,
            [e + "--clip_timestamps must be comma-separated seconds, got '0,,3'"],
        ),
        (
            [a, "--language", "xx"],
            2,
            [
                e + "unknown language 'xx': use a code or name from whisperms.tokenizer.LANGUAGES, "
                "e.g. 'de' or 'German'"
            ],
        ),
        (
            [a, "--max_line_width", "40"],
            2,
            [e + "--max_line_width requires --word_timestamps True"],
        ),
        ([a, "--max_line_count", "2"], 2, [e + "--max_line_count requires --word_timestamps True"]),
        (
            [a, "--max_words_per_line", "3"],
            2,
            [e + "--max_words_per_line requires --word_timestamps True"],
        ),
        (
            [a, "--highlight_words", "True"],
            2,
            [e + "--highlight_words requires --word_timestamps True"],
        ),
        (
            [a, "--word_timestamps", "True", "--max_line_width", "-2"],
            2,
            [e + "--max_line_width must be 0 (no limit) or more, got -2"],
        ),
        (
            [a, "--threads", "-1"],
            2,
            [e + "--threads must be 0 (all cores) or a positive number of cores, got -1"],
        ),
        ([a, "--model_dir", a], 2, [e + f"--model_dir {a} is not a folder"]),
        (
            [a, "--verbose", "maybe"],
            2,
            [e + "argument --verbose: expected True or False, got 'maybe' (see whisperms --help)"],
        ),
        (
            [a, "--no_such_option"],
            2,
            [e + "unrecognized arguments: --no_such_option (see whisperms --help)"],
        ),
        (
            [a, "--beam_size", "5", "--patience", "1e308"],
            2,
            [
                e + "--patience 1e+308 is too large: the count of finished candidates it asks for "
                "is not finite"
            ],
        ),
        (  # a prompt in Latin-1 from the shell: Python keeps the byte as a surrogate
            [a, "--initial_prompt", "caf\udce9"],
            2,
            [
                e + "--initial_prompt is not valid text: character 4 is a byte that is not UTF-8 "
                "(give the text in UTF-8)"
            ],
        ),
        ([], 2, [e + "the following arguments are required: audio (see whisperms --help)"]),
        (
            ["convert", "only-one"],
            2,
            [e + "the following arguments are required: dst (see whisperms convert --help)"],
        ),
    ]
    assert cli_checks(cases, cwd=tmp_path) == 35
    # and the real entry point: the same one line, nothing else
    assert cli(a, "--temperature", "-1") == (
        2,
        [],
        [e + "--temperature must be a finite number >= 0, got -1.0"],
    )
    assert not list(tmp_path.iterdir())


def test_options_another_makes_useless_are_warnings(tmp_path, tiny_en_ct2_dir):
    """As openai's CLI: --max_line_count without --max_line_width is a warning, and so is
    --max_words_per_line with --max_line_width and --max_line_count (openai warns of it with the
    width alone, where its writers still cut cues every N words); hallucination_silence_threshold
    without word timestamps and vad_parameters without the VAD filter have no effect (openai and
    faster-whisper ignore them): one warning line each, the file transcribed, exit 0 (they were
    usage errors)."""
    runs = {
        ("--word_timestamps", "True", "--max_line_count", "2"): (
            "--max_line_count has no effect without --max_line_width"
        ),
        ("--word_timestamps", "True", "--max_line_width", "20", "--max_line_count", "2")
        + ("--max_words_per_line", "3"): (
            "--max_words_per_line has no effect with --max_line_width and --max_line_count"
        ),
        ("--hallucination_silence_threshold", "2"): (
            "hallucination_silence_threshold has no effect without word_timestamps=True"
        ),
        # faster-whisper ignores them without a word
        (
            "--vad_parameters",
            "threshold=0.6",
        ): "vad_parameters has no effect without vad_filter=True",
    }
    for index, (options, warning) in enumerate(runs.items()):
        out = tmp_path / str(index)
        status, _, stderr = cli(SHORT, "--model", tiny_en_ct2_dir, "-o", out, "-f", "srt", *options)
        assert status == 0, stderr
        assert [line for line in stderr if "warning" in line] == [f"whisperms: warning: {warning}"]
        assert "modern" in (out / "ljspeech_LJ001-0002.srt").read_text()
    # --max_words_per_line beside --max_line_width alone still cuts cues: no warning (openai's)
    words = ("--word_timestamps", "True", "--max_line_width", "20", "--max_words_per_line", "2")
    status, _, stderr = cli(SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "srt", *words)
    assert status == 0 and not [line for line in stderr if "warning" in line], stderr
    cues = (tmp_path / "ljspeech_LJ001-0002.srt").read_text().strip().split("\n\n")
    assert len(cues) > 1 and all(len(cue.split("\n", 2)[2].split()) <= 2 for cue in cues)


# --- 2. options never checked (API): OptionsError with one line, before any decoding
# ---------------------------


def test_api_option_values_are_options_errors(tiny_en_model, short_audio):
    from whisperms import OptionsError

    cases = [
        (dict(temperature=-1), "temperature must be a finite number >= 0, got -1"),
        (
            dict(temperature=(0.0, float("nan"))),
            "temperature must be a finite number >= 0, got nan",
        ),
        (
            dict(temperature=()),
            "temperature must be a number >= 0 or a non-empty sequence of them, got an empty one",
        ),
        (
            dict(temperature="0.2"),
            "temperature must be a number >= 0 or a sequence of them, got '0.2'",
        ),
        (dict(best_of=0), "best_of must be an integer from 1 to 128 or None, got 0"),
        (dict(beam_size=2.5), "beam_size must be an integer from 1 to 128 or None, got 2.5"),
        (dict(patience=2.0), "patience requires beam_size to be given"),
        (dict(word_timestamps="yes"), "word_timestamps must be True or False, got 'yes'"),
        (dict(initial_prompt=5), "initial_prompt must be a string or token ids, got 5"),
        (dict(hotwords=["a"]), "hotwords must be a string, got ['a']"),
        (dict(repetition_penalty=None), "repetition_penalty must be a finite number > 0, got None"),
        (dict(no_repeat_ngram_size=1.5), "no_repeat_ngram_size must be an integer >= 0, got 1.5"),
        (dict(max_new_tokens="8"), "max_new_tokens must be an integer >= 1 or None, got '8'"),
        (
            dict(hotwords="\udcff"),
            "hotwords is not valid text: character 1 is a byte that is not UTF-8 (give the text "
            "in UTF-8)",
        ),
        (
            dict(initial_prompt="abc\udcff"),
            "initial_prompt is not valid text: character 4 is a byte that is not UTF-8 (give the "
            "text in UTF-8)",
        ),
        (
            dict(prefix="\udcff"),
            "prefix is not valid text: character 1 is a byte that is not UTF-8 (give the text in "
            "UTF-8)",
        ),
        (
            dict(beam_size=5, patience=1e308),
            "patience 1e+308 is too large: the count of finished candidates it asks for is not "
            "finite",
        ),
        (dict(clip_timestamps=[1, -2]), "clip_timestamps must be finite seconds >= 0, got -2"),
        (
            dict(suppress_tokens="99999"),
            "suppress_tokens: token id 99999 is beyond this model's vocabulary of 51864 tokens",
        ),
        (
            dict(prompt=[1, 2**40]),
            "prompt: token id 1099511627776 is beyond this model's vocabulary of 51864 tokens",
        ),
        (dict(language=7), "language must be a code or name such as 'de' or 'German', got 7"),
        (dict(task="summarize"), "unknown task 'summarize': use 'transcribe' or 'translate'"),
        (dict(beam_sizes=5), "unknown option 'beam_sizes'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OptionsError) as info:
            tiny_en_model.transcribe(short_audio, **kwargs)
        assert str(info.value) == message, kwargs


# --- 3. arrays given to the API: converted as documented, or an AudioError
# ----------------------------------------


def test_arrays_are_converted_or_refused(tiny_en_model, short_audio, short_text):
    from whisperms import AudioError
    from whisperms.audio import load_audio

    pcm16 = np.round(short_audio * 32767).astype(np.int16)
    scaled = pcm16 / np.float32(32768)
    converted = {  # what transcribe() makes of each array: load_audio's result, exactly
        "float64": (short_audio.astype(np.float64), short_audio),
        "(N, 2) stereo, as soundfile.read returns": (
            np.stack([short_audio, 0 * short_audio], axis=1),
            short_audio / 2,
        ),
        "(2, N) stereo, as librosa returns": (
            np.stack([0 * short_audio, short_audio]),
            short_audio / 2,
        ),
        "(N, 1)": (short_audio[:, None], short_audio),
        "(1, N)": (short_audio[None], short_audio),
        "int16 PCM": (pcm16, scaled),
        "int32 PCM": (pcm16.astype(np.int32) << 16, scaled),
        "a list": (short_audio.tolist(), short_audio),
        "a list of (left, right) frames": (
            np.stack([short_audio, 0 * short_audio], axis=1).tolist(),
            short_audio / 2,
        ),
        "empty": (np.zeros(0), np.zeros(0, np.float32)),
        "empty stereo": (np.zeros((0, 2), np.int16), np.zeros(0, np.float32)),
    }
    for name, (audio, expected) in converted.items():
        waveform = load_audio(audio)
        assert waveform.dtype == np.float32 and waveform.ndim == 1, name
        np.testing.assert_array_equal(waveform, expected.astype(np.float32), err_msg=name)
    # and through transcribe: int16 stereo as soundfile.read(dtype="int16") gives it
    assert tiny_en_model.transcribe(np.stack([pcm16, pcm16], axis=1)).text == short_text
    assert segments_of(tiny_en_model.transcribe(np.zeros((0, 2), np.float32))) == []

    refused = [
        (
            short_audio.astype(np.int64),
            "audio array has dtype int64: pass float32 or float64 samples (full scale "
            "1.0), or int16 or int32 PCM, at 16 kHz",
        ),
        (
            np.zeros(100, np.uint8),
            "audio array has dtype uint8: pass float32 or float64 samples (full scale 1.0), "
            "or int16 or int32 PCM, at 16 kHz",
        ),
        (
            short_audio.astype(np.complex64),
            "audio array has dtype complex64: pass float32 or float64 samples (full "
            "scale 1.0), or int16 or int32 PCM, at 16 kHz",
        ),
        (
            np.zeros((80, 3000), np.float32),
            "audio array of shape (80, 3000) is not (samples, channels) or (channels, "
            "samples) with at most 8 channels",
        ),
        (
            np.zeros((2, 2, 100), np.float32),
            "audio array has 3 dimensions, shape (2, 2, 100): pass (samples,) mono, "
            "or (samples, channels) / (channels, samples)",
        ),
        (
            np.float32(0.5),
            "audio array has 0 dimensions, shape (): pass (samples,) mono, or (samples, channels) "
            "/ "
            "(channels, samples)",
        ),
        (
            None,
            "audio is None: pass a path, a file's content (bytes, a binary file object) or an "
            "array of samples",
        ),
        (
            2.5,
            "audio is of type float: pass a path, a file's content (bytes, a binary file object) "
            "or an array of samples",
        ),
        (
            np.array([[0.1, 0.2], [0.3]], dtype=object),
            "audio array has dtype object: pass float32 or float64 samples (full scale 1.0), or "
            "int16 or int32 PCM, at 16 kHz",
        ),
        # clips in a list were stacked as channels and averaged into one signal of both
        (
            [short_audio, short_audio[::-1]],
            "audio array is a list of 2 clips: pass one clip per call (several files share "
            "batches through BatchedTranscriber), or channels as one array",
        ),
        (
            (short_audio, short_audio),
            "audio array is a tuple of 2 clips: pass one clip per call (several files share "
            "batches through BatchedTranscriber), or channels as one array",
        ),
        (
            (short_audio, 16000),  # what soundfile.read and librosa.load return
            "audio array is a (samples, sample rate) pair: pass the samples alone, at 16 kHz",
        ),
    ]
    for audio, message in refused:
        with pytest.raises(AudioError) as info:
            tiny_en_model.transcribe(audio)
        assert str(info.value) == message


# --- 4. non-finite samples: set to 0 with one warning, never a NaN log-mel
# -------------------------------------


def test_non_finite_samples_are_zeroed_with_a_warning(
    tiny_en_model, short_audio, short_text, tmp_path
):
    from whisperms import WhispermsWarning
    from whisperms.audio import load_audio, log_mel_spectrogram

    bad = short_audio.copy()
    bad[1000:1300], bad[5000], bad[6000] = np.nan, np.inf, -np.inf
    zeroed = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    message = (
        f"audio array: 302 of {len(bad)} samples are not finite (NaN or infinity) and were set to 0"
    )
    with pytest.warns(WhispermsWarning) as record:
        np.testing.assert_array_equal(load_audio(bad), zeroed)
    assert [str(w.message) for w in record] == [message]
    with pytest.warns(WhispermsWarning) as record:
        assert tiny_en_model.transcribe(bad).text == short_text
    assert [str(w.message) for w in record] == [message]

    path = tmp_path / "float.wav"  # a float WAV carries NaN as it is
    raw, rate = soundfile.read(SHORT, dtype="float32")
    raw[2000:2400] = np.nan
    soundfile.write(path, raw, rate, subtype="FLOAT")
    with pytest.warns(WhispermsWarning, match=f"^{path}: 400 of {len(raw)} samples are not finite"):
        audio = load_audio(path)
    assert np.isfinite(audio).all()

    with pytest.warns(
        WhispermsWarning, match="^audio array: 16000 of 16000 samples are not finite"
    ):
        assert segments_of(tiny_en_model.transcribe(np.full(16000, np.nan, np.float32))) == []
    huge = short_audio.copy()
    huge[100] = 1e30  # finite, but its power spectrum overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from NumPy either
        warnings.filterwarnings("ignore", "audio array: samples reach", WhispermsWarning)
        assert np.isfinite(log_mel_spectrogram(huge)).all()
        assert np.isfinite(log_mel_spectrogram(np.float32([3e38, -3e38] * 8000))).all()


# --- 5. a loop that assumed a bound: clips beyond the end end
# ----------------------------------------------------


def test_clips_beyond_the_end_end(tiny_en_model, short_audio, short_text):
    with deadline(120):
        for clips in ("100,200", "100", [50.0, 60.0, 70.0], "1.9,100"):
            assert (
                segments_of(tiny_en_model.transcribe(short_audio, clip_timestamps=clips)) == []
            ), clips
        # a clip partly beyond the end is cut there: the whole file, once, as without clips
        whole = segments_of(tiny_en_model.transcribe(short_audio))
        assert whole == [(0.0, 2.0, short_text)]
        for clips in ("0,100", "0,1000,2000,3000", "0,1e308"):
            assert (
                segments_of(tiny_en_model.transcribe(short_audio, clip_timestamps=clips)) == whole
            ), clips
        # times too large for frames are past the end too (they overflowed: a traceback), and a
        # max_initial_timestamp past the window is no limit
        for clips in ("1e308", [1e308, 1e308]):
            assert (
                segments_of(tiny_en_model.transcribe(short_audio, clip_timestamps=clips)) == []
            ), clips
        assert segments_of(tiny_en_model.transcribe(short_audio, max_initial_timestamp=1e308)) == (
            whole
        )


# --- 6. wrong words: each bad path named as what it is
# ------------------------------------------------------------


def test_bad_paths_are_named(tmp_path, capfd):
    from whisperms import AudioError
    from whisperms.audio import load_audio

    folder = tmp_path / "clips.wav"
    folder.mkdir()
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"not audio at all\n" * 50)
    cases = [
        (folder, f"{folder} is a folder, not an audio file"),
        ("/dev/null", "/dev/null is not a regular file or a pipe"),
        (tmp_path / "missing.wav", f"audio file not found: {tmp_path / 'missing.wav'}"),
        (
            tmp_path / ("x" * 300),
            f"cannot open audio file {tmp_path / ('x' * 300)}: File name too long",
        ),
        (
            garbage,
            f"could not decode audio file {garbage}: not a supported audio format, or corrupted",
        ),
        # a line break in a name (a path pasted with its newline) stays in the one line, as \n
        ("a1.wav\n", "audio file not found: a1.wav\\n"),
    ]
    for path, message in cases:
        with pytest.raises(AudioError) as info:
            load_audio(path)
        assert str(info.value) == message
    assert capfd.readouterr() == ("", "")  # the MP3 decoder's "Note: ..." lines included

    e = "whisperms: error: "
    cli_cases = [
        ([folder], 1, [e + f"{folder} is a folder, not an audio file"]),
        (
            [tmp_path / "missing.wav", folder],
            1,
            [
                e + f"audio file not found: {tmp_path / 'missing.wav'}",
                e + f"{folder} is a folder, not an audio file",
            ],
        ),
    ]
    assert cli_checks(cli_cases, cwd=tmp_path) == 2


def test_a_pipe_given_by_name_is_read_whole(tmp_path, tiny_en_ct2_dir):
    """The CLI reads a pipe given by name (bash's <(...), a named FIFO) to its end and decodes it
    as the file, in the sequential and the batched mode, as openai-whisper's ffmpeg reads one (it
    was refused as "not a regular file"). load_audio, which a bulk job's workers and a server call
    on paths, refuses a pipe's name, where its open would wait for a writer, and takes it opened."""
    import threading

    from whisperms import AudioError
    from whisperms.audio import load_audio

    fifo = tmp_path / "fifo.flac"
    os.mkfifo(fifo)
    with pytest.raises(AudioError) as info:
        load_audio(fifo)
    assert str(info.value) == (
        f"{fifo} is a named pipe, not a file (load_audio reads one given opened: open(path, 'rb'))"
    )
    writer = threading.Thread(target=lambda: fifo.write_bytes(JFK.read_bytes()))
    writer.start()
    with deadline(60), open(fifo, "rb") as pipe:
        piped = load_audio(pipe)
    writer.join()
    np.testing.assert_array_equal(piped, load_audio(JFK))
    model = ["--model", str(tiny_en_ct2_dir), "-f", "txt", "--verbose", "False"]
    for mode in ([], ["--batch_size", "2"]):
        out = tmp_path / f"out{len(mode)}"
        command = [sys.executable, "-m", "whisperms", "<(cat", f"'{JFK}')", "-o", str(out)]
        proc = subprocess.run(
            ["bash", "-c", " ".join([*command, *model, *mode])],
            capture_output=True,
            text=True,
            timeout=600,
            env=user_env(),
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        (written,) = out.iterdir()
        assert "ask not what your country can do for you" in written.read_text()


@pytest.mark.skipif(
    not can_drop_privileges(), reason="needs root and setpriv to run the CLI as 'nobody'"
)
def test_permissions_as_another_user(shared_tmp):
    """An unreadable input and a read-only output folder, as a user without the bypass root has: one
    line each, before any model is loaded."""
    tmp_path = shared_tmp
    audio = tmp_path / "a.wav"
    shutil.copy(SHORT, audio)
    audio.chmod(0o644)
    secret = tmp_path / "secret.wav"
    shutil.copy(SHORT, secret)
    secret.chmod(0)
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    readonly.chmod(0o555)
    e = "whisperms: error: "
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    assert cli(hidden / "x.wav", prefix=NOBODY, cwd=tmp_path) == (
        1,
        [],
        [
            e + f"cannot read audio file {hidden / 'x.wav'}: permission denied",
            # openai's default output folder, the cwd
            e + "output folder . is not writable: permission denied",
        ],
    )
    assert cli(secret, audio, "-o", readonly, prefix=NOBODY, cwd=tmp_path) == (
        1,
        [],
        [
            e + f"cannot read audio file {secret}: permission denied",
            e + f"output folder {readonly} is not writable: permission denied",
        ],
    )
    assert cli(audio, "-o", readonly / "sub", prefix=NOBODY, cwd=tmp_path) == (
        1,
        [],
        [e + f"cannot create output folder {readonly / 'sub'}: permission denied in {readonly}"],
    )
    assert list(readonly.iterdir()) == []
    # a pipe given by name that this user may not read: the same line, before the model loads
    # (its open's error had been reported as the output folder's)
    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe, 0o600)
    assert cli(pipe, "-o", "/tmp", prefix=NOBODY, cwd=tmp_path) == (
        1,
        [],
        [e + f"cannot read audio file {pipe}: permission denied"],
    )


def _can_mount_read_only():
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(
    not _can_mount_read_only(), reason="needs unshare to mount a read-only file system"
)
def test_output_folder_on_a_read_only_file_system(tmp_path):
    """An output folder on a file system mounted read-only (a container's, a recovery mount) was
    "not writable: permission denied", which sends a user to chmod: it names the file system."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    # a read-only tmpfs over the folder, in a mount namespace of the CLI's own
    mounted = [
        "unshare",
        "-rm",
        "sh",
        "-c",
        'mount -t tmpfs -o ro none "$0" && exec "$@"',
        readonly,
    ]
    e = "whisperms: error: "
    assert cli(SHORT, "-o", readonly, prefix=mounted) == (
        1,
        [],
        [e + f"output folder {readonly} is on a read-only file system"],
    )
    deeper = readonly / "a" / "b"
    assert cli(SHORT, "-o", deeper, prefix=mounted) == (
        1,
        [],
        [e + f"cannot create output folder {deeper}: {readonly} is on a read-only file system"],
    )


# --- 7. the output folder: checked before decoding, one line
# -------------------------------------------------------


def test_output_folder_problems(tmp_path):
    a = SHORT
    e = "whisperms: error: "
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    cases = [
        ([a, "-o", existing], 1, [e + f"output folder {existing} exists and is not a folder"]),
        (
            [a, "-o", existing / "out"],
            1,
            [e + f"cannot create output folder {existing / 'out'}: {existing} is not a folder"],
        ),
        (
            [tmp_path / "missing.wav", "-o", existing],
            1,
            [
                e + f"audio file not found: {tmp_path / 'missing.wav'}",
                e + f"output folder {existing} exists and is not a folder",
            ],
        ),
        ([a, "-o", ""], 1, [e + "the output folder's name is empty"]),
        (
            [a, "-o", tmp_path / "dangling" / "out"],
            1,
            [
                e + f"cannot create output folder {tmp_path / 'dangling' / 'out'}: "
                f"{tmp_path / 'dangling'} is a broken symbolic link"
            ],
        ),
    ]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert cli_checks(cases, cwd=tmp_path) == 5
    assert existing.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "dangling",
        "notes.txt",
    ]


# --- 8. a batch of bad files on a first run with empty caches: only whisperms' lines, the good
# files written -------


def test_first_run_batch_prints_only_our_lines(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    """A fresh machine (empty graph, kernel and user caches): the good file and the repaired one are
    transcribed, each bad one is one line, a transcript that cannot be written is one line, and
    nothing but whisperms' lines reach stdout and stderr (no AKG "Please set tiling repo path", no
    MP3 decoder "Note:")."""
    good = tmp_path / "good.wav"
    shutil.copy(SHORT, good)
    raw, rate = soundfile.read(SHORT, dtype="float32")
    raw[1000:1300] = np.nan
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, raw, rate, subtype="FLOAT")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"not audio at all\n" * 50)
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(30 * 16000, np.float32), 16000)
    blocked = tmp_path / "blocked.wav"
    shutil.copy(SHORT, blocked)
    out = tmp_path / "out"
    (out / "blocked.txt").mkdir(parents=True)
    caches = {
        "XDG_CACHE_HOME": tmp_path / "xdg",
        "WHISPERMS_GRAPH_CACHE": tmp_path / "graphs",
        "MS_COMPILER_CACHE_PATH": tmp_path / "kernels",
    }
    status, stdout, stderr = cli(
        good,
        nan,
        garbage,
        tmp_path / "missing.wav",
        silence,
        blocked,
        "--model",
        tiny_en_ct2_dir,
        "-o",
        out,
        "-f",
        "txt",
        env={name: str(path) for name, path in caches.items()},
    )
    e = "whisperms: error: "
    rt = tiny_en_model.runtime  # the same choices in the subprocess
    assert status == 1
    assert stderr == [
        e + f"audio file not found: {tmp_path / 'missing.wav'}",
        f"whisperms: tiny.en on {rt.device}, {rt.dtype}, attention {rt.attn_implementation}, conv "
        f"{rt.conv}, cores all",
        f"whisperms: warning: {nan}: 300 of {len(raw)} samples are not finite (NaN or infinity) "
        "and were set to 0",
        e + f"could not decode audio file {garbage}: not a supported audio format, or corrupted",
        e + f"{blocked}: cannot write {out / 'blocked.txt'}: it is a folder",
    ]
    assert stdout == ["[00:00.000 --> 00:02.000]  in being comparatively modern."] * 2
    assert sorted(p.name for p in out.iterdir()) == [
        "blocked.txt",
        "good.txt",
        "nan.txt",
        "silence.txt",
    ]
    assert (out / "silence.txt").read_text() == ""  # 30 s of zeros: no "you"
    # the caches were used
    assert any((tmp_path / "kernels").rglob("*")) and any((tmp_path / "graphs").iterdir())


# --- 9. silence: pure silence gives no text, speech around it is unchanged
# ----------------------------------------


def test_digital_silence_gives_no_text(tiny_en_model, short_audio, short_text):
    zeros = np.zeros(30 * 16000, np.float32)
    for kwargs in (dict(), dict(beam_size=5, best_of=5), dict(word_timestamps=True)):
        assert segments_of(tiny_en_model.transcribe(zeros, **kwargs)) == [], kwargs
    assert segments_of(tiny_en_model.transcribe(np.zeros(75 * 16000, np.float32))) == []
    # openai's rule alone (no_speech_threshold=None turns the silence rule off too) hallucinates, as
    # openai does
    assert tiny_en_model.transcribe(zeros, no_speech_threshold=None).text.strip().lower() == "you"
    # speech, 70 s of zeros (the window at 30-60 s is all zeros), speech: both utterances and
    # nothing else. (The second is timed from 60 s, where its window starts: openai's first
    # timestamp comes within 1 s of a window.)
    gap = np.zeros(70 * 16000, np.float32)
    result = tiny_en_model.transcribe(np.concatenate([short_audio, gap, short_audio]))
    assert [s.text.lower().strip(" .,") for s in result.segments] == [
        "in being comparatively modern"
    ] * 2, segments_of(result)


# --- 10. files written by `whisperms convert` follow the umask
# -----------------------------------------------------


def test_convert_output_follows_the_umask(tmp_path, tiny_en_ct2_dir):
    from whisperms.convert import convert

    previous = os.umask(0o027)
    try:
        folder = convert(tiny_en_ct2_dir, tmp_path / "tiny.en", dtype="float16")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"config.json": 0o640, "model.safetensors": 0o640, "tokenizer.json": 0o640}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_module_imports_stay_light():
    """`import whisperms` and the CLI module do not import MindSpore (the usage-error harness relies
    on it)."""
    code = "import sys, whisperms, whisperms.cli; print('mindspore' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        == "False\n"
    )


def test_decode_refuses_a_mel_that_is_not_finite(tiny_en_model):
    """decode() called directly (no transcribe() to clean the audio first) names a NaN or infinite
    mel."""
    from whisperms import OptionsError
    from whisperms.audio import N_FRAMES

    for bad in (np.nan, np.inf):
        mel = np.zeros((80, N_FRAMES), np.float32)
        mel[3, 7] = bad
        with pytest.raises(OptionsError, match="^mel holds NaN or infinite values"):
            tiny_en_model.decode(mel)


def _lying_flac(path, samples):
    """A valid FLAC of `samples` whose STREAMINFO claims 2**36 - 1 frames (a header that lies)."""
    soundfile.write(path, samples, 16000, format="FLAC")
    data = bytearray(path.read_bytes())
    field = 8 + 10  # STREAMINFO's 8 bytes of rate, channels, bits and the 36-bit frame count
    packed = int.from_bytes(data[field : field + 8], "big") | ((1 << 36) - 1)
    data[field : field + 8] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert soundfile.info(str(path)).frames == (1 << 36) - 1


def test_headers_that_lie_about_the_length(
    tmp_path, tiny_en_model, short_audio, short_text, monkeypatch
):
    """A file is read as far as its samples go, whatever length its header declares (a whole-file
    read would first allocate what the header claims: 512 GiB here, a MemoryError that took a
    batch's other inputs with it); audio that would make more than MAX_AUDIO_HOURS is refused in
    one line, and so is a sample rate no audio has (1 Hz: a few kilobytes made hours of samples);
    the other inputs of a batch are transcribed."""
    from whisperms import AudioError
    from whisperms.audio import load_audio
    from whisperms.audio_files import MAX_AUDIO_HOURS
    from whisperms.batched import BatchedTranscriber

    liar = tmp_path / "liar.flac"
    _lying_flac(liar, short_audio[:16000])
    try:
        decoded = load_audio(liar)
    except AudioError as error:  # libsndfile may stop at the missing frames
        assert str(error).startswith(f"could not decode audio file {liar}")
    else:
        assert len(decoded) <= 16000
    slow = tmp_path / "one_hertz.wav"  # 3.9 s of speech declaring 1 Hz: 17 hours of samples
    soundfile.write(slow, short_audio[: 4 * 16000], 1, subtype="PCM_16")
    with pytest.raises(AudioError) as info:
        load_audio(slow)
    assert str(info.value) == (
        f"{slow} declares a sample rate of 1 Hz, below the 1000 Hz of any audio: not an audio "
        "file, or its header is damaged"
    )
    long = tmp_path / "long.wav"  # 1 h 0.1 s at 1 kHz, against a limit of 1 h
    soundfile.write(long, np.zeros(3600 * 1000 + 100, np.int16), 1000, subtype="PCM_16")
    monkeypatch.setattr("whisperms.audio_files.MAX_AUDIO_HOURS", 1)
    with pytest.raises(AudioError) as info:
        load_audio(long)
    assert str(info.value) == (
        f"{long} holds more than 1 hours of audio at 1000 Hz, more than whisperms takes in one "
        "input: split it"
    )
    assert MAX_AUDIO_HOURS == 24
    good = tmp_path / "good.wav"
    soundfile.write(good, short_audio, 16000)
    results = dict(
        BatchedTranscriber(tiny_en_model, batch_size=4, temperature=0.0).results(
            [str(slow), str(good), str(liar)]
        )
    )
    assert isinstance(results[0], AudioError)
    assert results[1].text.strip() == short_text.strip()
    assert isinstance(results[2], AudioError) or len(results[2].segments) <= 1


def test_a_lying_header_is_read_on_a_machine_of_little_memory(tmp_path, short_audio):
    """The lying FLAC (1 s of audio declaring 2**36 - 1 frames: 24 hours' buffer, 5.5 GB) where a
    process may not map that much (here an address space of 3 GiB, as a small VM or strict
    overcommit refuses it): it was numpy's MemoryError, which ended a CLI run as "out of memory";
    now its second of audio, read into a buffer that grows as it is filled."""
    import resource

    liar = tmp_path / "liar.flac"
    _lying_flac(liar, short_audio[:16000])
    script = (
        "import sys\nfrom whisperms.audio import load_audio\n"
        "from whisperms.errors import AudioError\ntry:\n    print(len(load_audio(sys.argv[1])))\n"
        "except AudioError as error:\n    print(str(error))\n"
    )

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    run = subprocess.run(
        [sys.executable, "-c", script, str(liar)],
        capture_output=True, text=True, timeout=120, env=user_env(), preexec_fn=limited,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = run.stdout.strip()
    # as without the limit (test_headers_that_lie_about_the_length): the second, or libsndfile
    # stopping at the missing frames
    assert (out.isdigit() and int(out) <= 16000) or out.startswith("could not decode"), out


def test_a_file_cut_short_gives_the_audio_before_the_cut(tmp_path, tiny_en_ct2_dir):
    """A FLAC missing its last 2000 bytes (a download cut short): the audio before the cut, with a
    one-line warning, as truncated WAV and MP3 files already gave (it was refused whole: the
    decoder loses sync in the last block); the CLI transcribes it and exits 0."""
    from whisperms.audio import load_audio
    from whisperms.errors import AudioError, WhispermsWarning

    cut = tmp_path / "cut.flac"
    cut.write_bytes(JFK.read_bytes()[:-2000])
    whole = load_audio(JFK)
    with pytest.warns(WhispermsWarning, match="the audio stops decoding after 11.0 s"):
        decoded = load_audio(cut)
    assert len(whole) - 16000 < len(decoded) < len(whole)
    np.testing.assert_array_equal(decoded[: 10 * 16000], whole[: 10 * 16000])
    status, _, stderr = cli(cut, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt")
    assert status == 0, stderr
    assert [line for line in stderr if "warning" in line] == [
        f"whisperms: warning: {cut}: the audio stops decoding after 11.0 s (the file is damaged or "
        "cut short); transcribing what was read"
    ]
    assert "ask not what your country can do for you" in (tmp_path / "cut.txt").read_text()
    # a WAV file cut short: libsndfile reads what there is and said nothing
    wav = tmp_path / "whole.wav"
    soundfile.write(wav, whole, 16000, subtype="PCM_16")
    cut_wav = tmp_path / "cut.wav"
    cut_wav.write_bytes(wav.read_bytes()[: 44 + 2 * 16000 * 5])
    with pytest.warns(WhispermsWarning) as caught:
        decoded = load_audio(cut_wav)
    assert [str(w.message) for w in caught] == [
        f"{cut_wav}: the file ends after 5.00 s of the {len(whole) / 16000:.2f} s its header "
        "declares (cut short?); transcribing what was read"
    ]
    assert len(decoded) == 5 * 16000
    # cut right after its header (and a stray byte): no audio at all, an error (it was an empty
    # transcript, exit 0, no word)
    for size in (44, 45):
        cut_wav.write_bytes(wav.read_bytes()[:size])
        with pytest.raises(AudioError) as info:
            load_audio(cut_wav)
        assert str(info.value) == (
            f"could not decode audio file {cut_wav}: the file ends with its header, before any "
            f"of the {len(whole) / 16000:.2f} s of audio it declares (cut short?)"
        )
    out = tmp_path / "header_only"
    status, _, stderr = cli(cut_wav, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt")
    assert status == 1 and stderr[-1] == f"whisperms: error: {info.value}"
    assert not out.exists() or not any(out.iterdir())
    # a header written for a stream of unknown length (0xFFFFFFFF) is no file cut short
    stream = bytearray(wav.read_bytes())
    stream[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    cut_wav.write_bytes(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(cut_wav)) == len(whole)


def test_a_file_name_that_is_not_utf8(tmp_path, tiny_en_ct2_dir):
    """A file whose name's bytes are not UTF-8 (Python keeps them as surrogates): transcribed, its
    output named after it (libsndfile was handed a str it could not encode: a traceback)."""
    audio = tmp_path / os.fsdecode(b"caf\xe9.wav")
    shutil.copy(SHORT, audio)
    status, _, stderr = cli(audio, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt")
    assert status == 0, stderr
    assert "modern" in (tmp_path / os.fsdecode(b"caf\xe9.txt")).read_text()
