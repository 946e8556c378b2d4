"""load_model over the three folder kinds, and the one-line errors users see for bad checkpoints and
inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_convert import hf_folder, hf_real_folder, upper_half_heads
from user_env import user_env

from whisperms import AudioError, CheckpointError, OptionsError, WhispermsWarning, load_model
from whisperms.convert import convert, read_ctranslate2
from whisperms.device import ascend_available

from conftest import DATA, window_mel

JFK = DATA / "jfk_inaugural_1961.flac"


def one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def jfk_tokens(tiny_en_model):
    return tiny_en_model.decode(window_mel(JFK)).tokens


def test_ctranslate2_folder(tiny_en_model):
    assert tiny_en_model.name == "tiny.en" and not tiny_en_model.is_multilingual
    assert tiny_en_model.alignment_heads == [
        [1, 0],
        [2, 0],
        [2, 5],
        [3, 0],
        [3, 1],
        [3, 2],
        [3, 3],
        [3, 4],
    ]
    assert tiny_en_model.runtime.device == "CPU" and tiny_en_model.runtime.dtype == "float32"


def test_whisperms_folder_gives_the_same_tokens(tmp_path, tiny_en_ct2_dir, jfk_tokens):
    folder = convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    model = load_model(folder)
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens


def test_huggingface_folder_gives_the_same_tokens(tmp_path, tiny_en_ct2_dir, jfk_tokens):
    folder = hf_folder(tmp_path / "hf", read_ctranslate2(tiny_en_ct2_dir), shards=2)
    model = load_model(folder)
    assert model.alignment_heads == [[2, 2], [3, 0]]
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens


def test_a_distilled_models_borrowed_alignment_heads(tmp_path, tiny_en_ct2_dir, jfk_tokens):
    """A folder listing another model's alignment heads (a distilled model with its teacher's
    generation_config.json; tiny.en has 4 layers): loaded with a warning, transcribed as before, and
    its word timestamps timed by openai's default heads. It could not be loaded at all."""
    folder = hf_folder(tmp_path / "hf", read_ctranslate2(tiny_en_ct2_dir), heads=((2, 2), (25, 3)))
    with pytest.warns(WhispermsWarning, match="alignment_heads"):
        model = load_model(folder)
    assert model.alignment_heads == upper_half_heads(model.dims)
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens
    segments = model.transcribe(str(JFK), word_timestamps=True).segments
    words = [w for s in segments for w in s.words]
    assert "".join(w["word"] for w in words) == "".join(s.text for s in segments)
    assert [w["word"].strip() for w in words[:3]] == ["And", "so", "my"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and 0 < words[-1]["end"] <= 11.1


def test_huggingface_real_layout_gives_the_same_tokens(
    tmp_path, tiny_en_ct2_dir, tiny_en_model, jfk_tokens
):
    """A folder as HF's own conversion lays it out (float32, tied projection absent, full config):
    loaded directly and converted once, the same tokens and alignment heads (word timing) as the
    CTranslate2 original."""
    ct2_config = json.loads((tiny_en_ct2_dir / "config.json").read_text())
    folder = hf_real_folder(tmp_path / "hf", read_ctranslate2(tiny_en_ct2_dir), ct2_config)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as f:
        assert "proj_out.weight" not in f.keys()
        assert f.get_tensor("model.decoder.embed_tokens.weight").dtype == np.float32
    model = load_model(folder)
    assert model.name == "tiny.en" and model.alignment_heads == tiny_en_model.alignment_heads
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens
    converted = convert(folder, tmp_path / "tiny.en")
    config = json.loads((converted / "config.json").read_text())
    assert config["source"]["format"] == "huggingface" and config["name"] == "tiny.en"
    assert load_model(converted).decode(window_mel(JFK)).tokens == jfk_tokens


def test_named_model_from_the_weights_folder(tmp_path, monkeypatch, tiny_en_ct2_dir, jfk_tokens):
    convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    monkeypatch.setenv("WHISPERMS_WEIGHTS", str(tmp_path))
    assert load_model("tiny.en").decode(window_mel(JFK)).tokens == jfk_tokens


def test_named_model_offline_says_where_to_put_weights(tmp_path, monkeypatch):
    """Offline in any test order: the hub's offline flag is set where huggingface_hub reads it (its
    constants, read once at its import) as well as in the environment, and every socket connection
    is refused and recorded, so the test fails if the download path tries a network at all."""
    import socket

    import huggingface_hub.constants

    monkeypatch.setenv("WHISPERMS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test suite never reaches a network")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(CheckpointError) as excinfo:
        load_model("base.en")
    one_line(excinfo, "base.en", str(tmp_path / "base.en"), "WHISPERMS_WEIGHTS")
    assert not attempts
    assert not (tmp_path / "base.en").exists()


def test_a_model_converted_meanwhile_by_another_process_is_used(
    tmp_path, monkeypatch, tiny_en_ct2_dir, jfk_tokens
):
    """Two processes loading one model name on a fresh machine (bulk workers, two servers): the
    one that finished converting second failed with "already exists and is not empty". The hub is
    unreachable here, so its download is stood in for by the Hugging Face folder it would give,
    during which the other process's conversion lands. Only the files a conversion reads are
    asked for (large-v3's repository also holds a float32 copy of the weights, twice the size)."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    monkeypatch.setenv("WHISPERMS_WEIGHTS", str(tmp_path / "weights"))
    hub_folder = hf_folder(tmp_path / "hub", read_ctranslate2(tiny_en_ct2_dir))
    asked = []

    def download(repo, allow_patterns):
        asked.append((repo, allow_patterns))
        convert(tiny_en_ct2_dir, tmp_path / "weights" / "tiny.en")  # the other process
        return str(hub_folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    assert load_model("tiny.en").decode(window_mel(JFK)).tokens == jfk_tokens
    repo, patterns = asked[0]
    assert repo == "openai/whisper-tiny.en"
    large_v3 = [
        "config.json",
        "model.safetensors",
        "model.fp32-00001-of-00002.safetensors",
        "model.fp32-00002-of-00002.safetensors",
        "pytorch_model.bin",
        "tokenizer.json",
    ]
    wanted = list(filter_repo_objects(large_v3, allow_patterns=patterns))
    assert wanted == ["config.json", "model.safetensors", "tokenizer.json"]


def test_unknown_name(tmp_path):
    with pytest.raises(CheckpointError) as excinfo:
        load_model("tiny-v9")
    one_line(excinfo, "tiny-v9", "tiny.en")


def test_mismatched_checkpoint(tmp_path, tiny_en_ct2_dir):
    folder = convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    config = json.loads((folder / "config.json").read_text())
    config["dims"]["n_text_layer"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    one_line(excinfo, "decoder.blocks.4")


def test_corrupted_checkpoint(tmp_path, tiny_en_ct2_dir):
    folder = convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    one_line(excinfo, "model.safetensors")


def test_missing_and_undecodable_audio(tmp_path, tiny_en_model):
    with pytest.raises(AudioError) as excinfo:
        tiny_en_model.transcribe(str(tmp_path / "nothere.wav"))
    one_line(excinfo, "nothere.wav")
    bad = tmp_path / "noise.flac"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioError) as excinfo:
        tiny_en_model.transcribe(str(bad))
    one_line(excinfo, "noise.flac")


def test_language_errors(tiny_en_model, base_model):
    """An English-only model given another language transcribes English with a warning, as
    openai's CLI and faster-whisper do (it was an error), in both modes and for a batch input's
    own language; a language no model knows is an error."""
    from whisperms.batched import BatchedTranscriber, BatchInput
    from whisperms.errors import WhispermsWarning

    english = tiny_en_model.transcribe(str(JFK), language="en", temperature=0.0)
    for options in (dict(), dict(batch_size=2)):
        alone = tiny_en_model.transcribe(str(JFK), language="en", temperature=0.0, **options)
        with pytest.warns(WhispermsWarning, match="English-only; language 'German'") as said:
            german = tiny_en_model.transcribe(
                str(JFK), language="German", temperature=0.0, **options
            )
        assert german.text == alone.text and german.language == "en"
        assert [w.filename for w in said] == [__file__]  # the caller's line, not whisperms'
    assert english.text.strip()
    with pytest.warns(WhispermsWarning, match="language 'de' is ignored"):
        ((_, result),) = BatchedTranscriber(tiny_en_model, temperature=0.0).results(
            [BatchInput(str(JFK), language="de")]
        )
    assert result.text == alone.text
    with pytest.raises(OptionsError) as excinfo:
        tiny_en_model.transcribe(str(JFK), language="xx")
    one_line(excinfo, "xx")
    with pytest.raises(OptionsError) as excinfo:
        base_model.transcribe(str(JFK), language="xx")
    one_line(excinfo, "xx")
    with pytest.raises(OptionsError):
        tiny_en_model.detect_language(window_mel(JFK))


def test_unknown_device_and_dtype(tiny_en_ct2_dir):
    with pytest.raises(OptionsError) as excinfo:
        load_model(tiny_en_ct2_dir, device="TPU")
    one_line(excinfo, "TPU")
    with pytest.raises(OptionsError) as excinfo:
        load_model(tiny_en_ct2_dir, dtype="bfloat32")
    one_line(excinfo, "bfloat32")
    with pytest.raises(OptionsError) as excinfo:  # a string was taken as True
        load_model(tiny_en_ct2_dir, jit="no")
    assert str(excinfo.value) == "jit must be True or False, got 'no'"


@pytest.mark.skipif(
    ascend_available(), reason="checks the error on a machine without an Ascend device"
)
def test_ascend_without_a_device_is_a_one_line_error(tiny_en_ct2_dir):
    with pytest.raises(OptionsError) as excinfo:
        load_model(tiny_en_ct2_dir, device="Ascend")
    one_line(excinfo, "Ascend")


FORK_AT_ONCE = """
import multiprocessing, sys
from whisperms import load_model
model = load_model(sys.argv[1])
def child():
    import faulthandler
    faulthandler.dump_traceback_later(90, exit=True)
    print(model.transcribe(sys.argv[2]).text.strip(), flush=True)
if __name__ == "__main__":
    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(120)
    print("child exit", process.exitcode, flush=True)
"""


def test_a_model_forked_as_soon_as_it_is_loaded_works_and_the_script_exits_quietly(
    tiny_en_ct2_dir,
):
    """A fork right after load_model (a Pool set up at once, say) cut off the tokenizer being read
    on its own thread: the child hung on the parser's lock. And a script that imported
    multiprocessing printed hundreds of lines of MindSpore tracebacks at exit, one per Cell of the
    model still held in its globals."""
    audio = DATA / "cmuarctic_aew_arctic_a0003.wav"
    done = subprocess.run(
        [sys.executable, "-c", FORK_AT_ONCE, str(tiny_en_ct2_dir), str(audio)],
        capture_output=True,
        text=True,
        timeout=300,
        env=user_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "For the 20th time that evening the two men shook hands.",
        "child exit 0",
    ], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[
        -2000:
    ]


CTRL_C_AFTER = """
import signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a process started from a terminal
from whisperms import load_model
from whisperms.batched import BatchedTranscriber
model = load_model(sys.argv[1])
how, audio = sys.argv[2], sys.argv[3]
if how == "main":
    model.transcribe(audio)
elif how == "thread":  # a web app's request thread, an asyncio executor
    worker = threading.Thread(target=model.transcribe, args=(audio,))
    worker.start()
    worker.join()
elif how == "batched in a thread":
    worker = threading.Thread(target=BatchedTranscriber(model).run, args=(audio,))
    worker.start()
    worker.join()
elif how == "own handler":  # an application's clean shutdown
    signal.signal(signal.SIGINT, lambda signum, frame: print("own handler", flush=True))
    model.transcribe(audio)
try:  # entered before the parent is told, which then sends Ctrl-C
    print("transcribed", flush=True)
    time.sleep(120 if how != "own handler" else 5)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


@pytest.mark.parametrize(
    "how, said",
    [
        ("main", "KeyboardInterrupt"),
        ("thread", "KeyboardInterrupt"),
        ("batched in a thread", "KeyboardInterrupt"),
        ("own handler", "own handler"),
    ],
)
def test_ctrl_c_after_a_transcription_is_the_applications(tiny_en_ct2_dir, how, said):
    """Every graph run sets MindSpore's SIGINT handler, which makes Ctrl-C a SIGTERM: after one
    transcription a script's Ctrl-C killed it (exit 143, no KeyboardInterrupt, no clean-up), and
    after a call from another thread (a web app's), or with the application's own handler, it
    still did: the handler was given back only from the main thread."""
    import signal

    audio = DATA / "cmuarctic_aew_arctic_a0003.wav"
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_AFTER, str(tiny_en_ct2_dir), how, str(audio)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
    )
    try:
        assert process.stdout.readline() == "transcribed\n", process.stderr.read()[-2000:]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and out == said + "\n", err[-2000:]
