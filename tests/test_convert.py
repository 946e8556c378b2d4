"""Checkpoint conversion on real weights: CTranslate2 tiny.en and base, Hugging Face folders built
from them.

The raw CTranslate2 parser/writer and the Hugging Face name map below are written independently of
whisperms/convert.py, so that the two have to agree rather than share a mistake.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from whisperms.convert import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    convert,
    detect_format,
    model_name,
    read_checkpoint,
    read_ctranslate2,
    read_huggingface,
    read_whisperms,
    save_checkpoint,
)
from whisperms.errors import CheckpointError, OptionsError, WhispermsWarning
from whisperms.model import ModelDimensions, Whisper
from whisperms.state_assign import assign_state
from whisperms.state_layout import state_shapes
from whisperms.tensor_files import read_safetensors

TINY_EN_DIMS = ModelDimensions(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_vocab=51864,
    n_text_ctx=448,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
)
BASE_DIMS = ModelDimensions(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=512,
    n_audio_head=8,
    n_audio_layer=6,
    n_vocab=51865,
    n_text_ctx=448,
    n_text_state=512,
    n_text_head=8,
    n_text_layer=6,
)
D = 384  # tiny's width


# --- an independent reader/writer of CTranslate2 model.bin, binary version 6
# -----------------------------------
CT2_TYPES = ["float32", "int8", "int16", "int32", "float16", "bfloat16"]


def ct2_load(path):
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take("H")
        pos += n
        return data[pos - n : pos - 1].decode()

    assert take("I") == (6,) and string() == "WhisperSpec"
    take("I")
    variables = {}
    for _ in range(take("I")[0]):
        name = string()
        (rank,) = take("B")
        shape = take(f"{rank}I")
        type_name = CT2_TYPES[take("B")[0]]
        (num_bytes,) = take("I")
        assert type_name in ("float16", "int8", "int16"), (name, type_name)
        variables[name] = (
            np.frombuffer(data, type_name, num_bytes // np.dtype(type_name).itemsize, pos)
            .reshape(shape)
            .copy()
        )
        pos += num_bytes
    aliases = [(string(), string()) for _ in range(take("I")[0])]
    assert pos == len(data)
    return variables, aliases


def ct2_save(path, variables, aliases, version=6, spec="WhisperSpec"):
    """variables: name -> (type name, np.ndarray of the raw stored values)."""

    def string(s):
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = [struct.pack("<I", version), string(spec), struct.pack("<II", 3, len(variables))]
    for name, (type_name, value) in sorted(variables.items()):
        raw = np.ascontiguousarray(value).tobytes()
        out += [
            string(name),
            struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape),
            struct.pack("<BI", CT2_TYPES.index(type_name), len(raw)),
            raw,
        ]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(a) + string(b) for a, b in aliases]
    with open(path, "wb") as f:
        f.write(b"".join(out))


def ct2_folder(tmp_path, src, model_bin=None, files=("config.json", "tokenizer.json")):
    """A CTranslate2 folder in tmp_path with `src`'s side files and a symlink to (or given)
    model.bin."""
    folder = tmp_path / "ct2"
    folder.mkdir()
    for name in files:
        shutil.copy(src / name, folder / name)
    if model_bin is None:
        os.symlink(src / "model.bin", folder / "model.bin")
    else:
        (folder / "model.bin").write_bytes(model_bin)
    return folder


# --- an independent openai -> Hugging Face name map
# ------------------------------------------------------------
HF_TOP = {
    "encoder.conv1.weight": "model.encoder.conv1.weight",
    "encoder.conv1.bias": "model.encoder.conv1.bias",
    "encoder.conv2.weight": "model.encoder.conv2.weight",
    "encoder.conv2.bias": "model.encoder.conv2.bias",
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "encoder.ln_post.weight": "model.encoder.layer_norm.weight",
    "encoder.ln_post.bias": "model.encoder.layer_norm.bias",
    "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "decoder.ln.weight": "model.decoder.layer_norm.weight",
    "decoder.ln.bias": "model.decoder.layer_norm.bias",
}
HF_IN_BLOCK = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "cross_attn.query": "encoder_attn.q_proj",
    "cross_attn.key": "encoder_attn.k_proj",
    "cross_attn.value": "encoder_attn.v_proj",
    "cross_attn.out": "encoder_attn.out_proj",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}


def hf_name(name):
    if name in HF_TOP:
        return HF_TOP[name]
    side, blocks, layer, rest = name.split(".", 3)
    assert blocks == "blocks"
    module, leaf = rest.rsplit(".", 1)
    return f"model.{side}.layers.{layer}.{HF_IN_BLOCK[module]}.{leaf}"


def hf_folder(path, ckpt, shards=1, heads=((2, 2), (3, 0)), proj_out=None):
    path.mkdir()
    tensors = {hf_name(k): v for k, v in ckpt.state.items()}
    tensors["proj_out.weight"] = (
        ckpt.state["decoder.token_embedding.weight"] if proj_out is None else proj_out
    )
    d = ckpt.dims
    config = {
        "model_type": "whisper",
        "_name_or_path": "openai/whisper-tiny.en",
        "num_mel_bins": d.n_mels,
        "max_source_positions": d.n_audio_ctx,
        "d_model": d.n_audio_state,
        "encoder_attention_heads": d.n_audio_head,
        "encoder_layers": d.n_audio_layer,
        "vocab_size": d.n_vocab,
        "max_target_positions": d.n_text_ctx,
        "decoder_attention_heads": d.n_text_head,
        "decoder_layers": d.n_text_layer,
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "generation_config.json").write_text(
        json.dumps({"alignment_heads": [list(h) for h in heads]})
    )
    shutil.copy(ckpt.tokenizer_path, path / "tokenizer.json")
    if shards == 1:
        save_file(tensors, str(path / "model.safetensors"))
        return path
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        save_file({n: tensors[n] for n in part}, str(path / file))
        weight_map.update({n: file for n in part})
    index = {
        "metadata": {"total_size": sum(v.nbytes for v in tensors.values())},
        "weight_map": weight_map,
    }
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    return path


def hf_real_folder(path, ckpt, ct2_config):
    """A Hugging Face folder laid out as transformers' own conversion leaves it
    (openai/whisper-tiny.en on the hub): one float32 model.safetensors with HF's names and
    `{"format": "pt"}` metadata, the output projection tied to the token embedding and so absent
    from the file, the full config.json of WhisperForConditionalGeneration, a generation_config.json
    with the alignment heads, and the tokenizer and preprocessor files. The values are the
    CTranslate2 folder's (float16, widened exactly to float32)."""
    path.mkdir()
    tensors = {hf_name(k): np.ascontiguousarray(v, np.float32) for k, v in ckpt.state.items()}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    d = ckpt.dims
    config = {
        "_name_or_path": "openai/whisper-tiny.en",
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "architectures": ["WhisperForConditionalGeneration"],
        "attention_dropout": 0.0,
        "begin_suppress_tokens": [220, 50256],
        "bos_token_id": 50257,
        "d_model": d.n_audio_state,
        "decoder_attention_heads": d.n_text_head,
        "decoder_ffn_dim": 4 * d.n_text_state,
        "decoder_layerdrop": 0.0,
        "decoder_layers": d.n_text_layer,
        "decoder_start_token_id": 50257,
        "dropout": 0.0,
        "encoder_attention_heads": d.n_audio_head,
        "encoder_ffn_dim": 4 * d.n_audio_state,
        "encoder_layerdrop": 0.0,
        "encoder_layers": d.n_audio_layer,
        "eos_token_id": 50256,
        "forced_decoder_ids": [[1, 50362]],
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "max_length": d.n_text_ctx,
        "max_source_positions": d.n_audio_ctx,
        "max_target_positions": d.n_text_ctx,
        "model_type": "whisper",
        "num_hidden_layers": d.n_audio_layer,
        "num_mel_bins": d.n_mels,
        "pad_token_id": 50256,
        "scale_embedding": False,
        "suppress_tokens": ct2_config["suppress_ids"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.27.0.dev0",
        "use_cache": True,
        "vocab_size": d.n_vocab,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    generation = {
        "alignment_heads": [list(h) for h in ckpt.alignment_heads],
        "begin_suppress_tokens": [220, 50256],
        "bos_token_id": 50257,
        "decoder_start_token_id": 50257,
        "eos_token_id": 50256,
        "max_initial_timestamp_index": 50,
        "max_length": d.n_text_ctx,
        "no_timestamps_token_id": 50362,
        "pad_token_id": 50256,
        "return_timestamps": False,
        "suppress_tokens": ct2_config["suppress_ids"],
        "transformers_version": "4.27.0.dev0",
    }
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    (path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "chunk_length": 30,
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": d.n_mels,
                "hop_length": 160,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "padding_side": "right",
                "padding_value": 0.0,
                "processor_class": "WhisperProcessor",
                "return_attention_mask": False,
                "sampling_rate": 16000,
            }
        )
    )
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "model_max_length": 1024,
                "tokenizer_class": "WhisperTokenizer",
                "unk_token": "<|endoftext|>",
            }
        )
    )
    shutil.copy(ckpt.tokenizer_path, path / "tokenizer.json")
    return path


# --- fixtures
# --------------------------------------------------------------------------------------------------
# what a whisperms checkpoint folder holds
CHECKPOINT_FILES = sorted([CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE])


@pytest.fixture(scope="module")
def tiny(tiny_en_ct2_dir):
    return read_ctranslate2(tiny_en_ct2_dir)


@pytest.fixture(scope="module")
def tiny_raw(tiny_en_ct2_dir):
    return ct2_load(tiny_en_ct2_dir / "model.bin")


@pytest.fixture(scope="module")
def tiny_model(tiny):
    return Whisper(tiny.dims)


def model_shapes(dims):
    return {name: tuple(p.shape) for name, p in Whisper(dims).parameters_and_names()}


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


# --- CTranslate2
# --------------------------------------------------------------------------------------------------
def test_ct2_tiny_en_dims_name_and_names(tiny, tiny_en_ct2_dir):
    assert tiny.dims == TINY_EN_DIMS
    assert tiny.name == "tiny.en"
    assert detect_format(tiny_en_ct2_dir) == "ctranslate2"
    assert {k: v.shape for k, v in tiny.state.items()} == model_shapes(TINY_EN_DIMS)
    assert state_shapes(TINY_EN_DIMS) == model_shapes(TINY_EN_DIMS)
    assert all(v.dtype == np.float16 for v in tiny.state.values())  # as stored: no silent up-cast
    config = json.loads((tiny_en_ct2_dir / "config.json").read_text())
    assert tiny.alignment_heads == config["alignment_heads"]
    assert tiny.tokenizer_path == tiny_en_ct2_dir / "tokenizer.json"
    assert tiny.source["format"] == "ctranslate2" and tiny.source["binary_version"] == 6


def test_ct2_fused_projections_split(tiny, tiny_raw):
    raw, aliases = tiny_raw
    assert aliases == [("decoder/projection/weight", "decoder/embeddings/weight")]
    qkv_w = raw["encoder/layer_1/self_attention/linear_0/weight"]
    qkv_b = raw["encoder/layer_1/self_attention/linear_0/bias"]
    assert qkv_w.shape == (3 * D, D) and qkv_b.shape == (3 * D,)
    s = tiny.state
    np.testing.assert_array_equal(s["encoder.blocks.1.attn.query.weight"], qkv_w[:D])
    np.testing.assert_array_equal(s["encoder.blocks.1.attn.key.weight"], qkv_w[D : 2 * D])
    np.testing.assert_array_equal(s["encoder.blocks.1.attn.value.weight"], qkv_w[2 * D :])
    np.testing.assert_array_equal(s["encoder.blocks.1.attn.query.bias"], qkv_b[:D])
    np.testing.assert_array_equal(s["encoder.blocks.1.attn.value.bias"], qkv_b[2 * D :])
    assert not np.any(qkv_b[D : 2 * D])  # CTranslate2's key bias is all zero
    assert np.any(qkv_b[:D]) and np.any(qkv_b[2 * D :])

    kv_w = raw["decoder/layer_2/attention/linear_1/weight"]
    kv_b = raw["decoder/layer_2/attention/linear_1/bias"]
    assert kv_w.shape == (2 * D, D)
    np.testing.assert_array_equal(s["decoder.blocks.2.cross_attn.key.weight"], kv_w[:D])
    np.testing.assert_array_equal(s["decoder.blocks.2.cross_attn.value.weight"], kv_w[D:])
    np.testing.assert_array_equal(s["decoder.blocks.2.cross_attn.value.bias"], kv_b[D:])
    assert not np.any(kv_b[:D])
    np.testing.assert_array_equal(
        s["decoder.blocks.2.cross_attn.query.weight"],
        raw["decoder/layer_2/attention/linear_0/weight"],
    )
    np.testing.assert_array_equal(
        s["decoder.blocks.2.cross_attn.out.bias"], raw["decoder/layer_2/attention/linear_2/bias"]
    )
    self_qkv = raw["decoder/layer_0/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(s["decoder.blocks.0.attn.value.weight"], self_qkv[2 * D :])
    assert not np.any(raw["decoder/layer_0/self_attention/linear_0/bias"][D : 2 * D])


def test_ct2_unfused_tensors(tiny, tiny_raw):
    raw, _ = tiny_raw
    s = tiny.state
    pairs = {
        "encoder.conv1.weight": "encoder/conv1/weight",
        "encoder.conv2.bias": "encoder/conv2/bias",
        "encoder.positional_embedding": "encoder/position_encodings/encodings",
        "encoder.ln_post.weight": "encoder/layer_norm/gamma",
        "encoder.ln_post.bias": "encoder/layer_norm/beta",
        "decoder.token_embedding.weight": "decoder/embeddings/weight",
        "decoder.positional_embedding": "decoder/position_encodings/encodings",
        "decoder.ln.bias": "decoder/layer_norm/beta",
        "encoder.blocks.3.attn_ln.weight": "encoder/layer_3/self_attention/layer_norm/gamma",
        "encoder.blocks.3.attn.out.weight": "encoder/layer_3/self_attention/linear_1/weight",
        "encoder.blocks.3.mlp.0.weight": "encoder/layer_3/ffn/linear_0/weight",
        "encoder.blocks.3.mlp.2.bias": "encoder/layer_3/ffn/linear_1/bias",
        "encoder.blocks.3.mlp_ln.bias": "encoder/layer_3/ffn/layer_norm/beta",
        "decoder.blocks.1.cross_attn_ln.weight": "decoder/layer_1/attention/layer_norm/gamma",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_array_equal(s[ours], raw[theirs], err_msg=ours)


def test_ct2_base(base_ct2_dir):
    ckpt = read_checkpoint(base_ct2_dir)
    assert ckpt.dims == BASE_DIMS
    assert ckpt.name == "base"
    assert {k: v.shape for k, v in ckpt.state.items()} == state_shapes(BASE_DIMS)
    config = json.loads((base_ct2_dir / "config.json").read_text())
    assert (
        ckpt.alignment_heads
        == config["alignment_heads"]
        == [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]]
    )


def test_ct2_quantized_and_bfloat16_variables(tmp_path, tiny_en_ct2_dir, tiny_raw):
    raw, aliases = tiny_raw
    stored = {name: (str(v.dtype), v) for name, v in raw.items()}
    # int8 with a per-row scale (CTranslate2: q = round(x * scale), scale = 127 / max|row|)
    qkv = raw["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32)
    scale8 = (127.0 / np.abs(qkv).max(axis=1)).astype(np.float32)
    q8 = np.round(qkv * scale8[:, None]).astype(np.int8)
    stored["encoder/layer_0/self_attention/linear_0/weight"] = ("int8", q8)
    stored["encoder/layer_0/self_attention/linear_0/weight_scale"] = ("float32", scale8)
    # int16 with one scale per tensor
    fc1 = raw["decoder/layer_0/ffn/linear_0/weight"].astype(np.float32)
    scale16 = np.float32(1000.0)
    q16 = np.round(fc1 * scale16).astype(np.int16)
    stored["decoder/layer_0/ffn/linear_0/weight"] = ("int16", q16)
    stored["decoder/layer_0/ffn/linear_0/weight_scale"] = ("float32", np.array(scale16))
    # bfloat16: the top 16 bits of a float32
    conv2 = raw["encoder/conv2/weight"].astype(np.float32)
    stored["encoder/conv2/weight"] = ("bfloat16", (conv2.view(np.uint32) >> 16).astype(np.uint16))

    folder = tmp_path / "ct2q"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(tiny_en_ct2_dir / name, folder / name)
    ct2_save(folder / "model.bin", stored, aliases)
    s = read_ctranslate2(folder).state

    deq = q8.astype(np.float32) / scale8[:, None]
    np.testing.assert_allclose(s["encoder.blocks.0.attn.query.weight"], deq[:D], rtol=1e-6)
    np.testing.assert_allclose(s["encoder.blocks.0.attn.value.weight"], deq[2 * D :], rtol=1e-6)
    np.testing.assert_allclose(
        s["encoder.blocks.0.attn.query.weight"], qkv[:D], atol=0.5 / scale8[:D, None].min()
    )
    np.testing.assert_allclose(s["decoder.blocks.0.mlp.0.weight"], q16 / scale16, rtol=1e-6)
    np.testing.assert_allclose(s["decoder.blocks.0.mlp.0.weight"], fc1, atol=0.5 / 1000 + 1e-7)
    expected_bf16 = (conv2.view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(s["encoder.conv2.weight"], expected_bf16)
    assert s["encoder.conv2.weight"].dtype == np.float32
    np.testing.assert_allclose(s["encoder.conv2.weight"], conv2, rtol=2**-7)


def test_ct2_rejects_unknown_version_and_spec(tmp_path, tiny_en_ct2_dir):
    for blob, fragment in (
        (struct.pack("<I", 7) + b"\0" * 64, "unsupported CTranslate2 binary version 7"),
        (struct.pack("<I", 0), "unsupported CTranslate2 binary version 0"),
    ):
        folder = ct2_folder(tmp_path, tiny_en_ct2_dir, model_bin=blob)
        with pytest.raises(CheckpointError) as excinfo:
            read_checkpoint(folder)
        assert_one_line_error(excinfo, "model.bin", fragment)
        shutil.rmtree(folder)
    ct2_save(
        tmp_path / "other.bin",
        {"x": ("float32", np.zeros(2, np.float32))},
        [],
        spec="TransformerSpec",
    )
    folder = ct2_folder(tmp_path, tiny_en_ct2_dir, model_bin=(tmp_path / "other.bin").read_bytes())
    with pytest.raises(CheckpointError) as excinfo:
        read_ctranslate2(folder)
    assert_one_line_error(excinfo, "TransformerSpec", "not a Whisper model")


def test_ct2_truncated_model_bin(tmp_path, tiny_en_ct2_dir):
    data = (tiny_en_ct2_dir / "model.bin").read_bytes()
    for cut in (0, 3, 40, 1 << 20, len(data) - 10):
        folder = ct2_folder(tmp_path, tiny_en_ct2_dir, model_bin=data[:cut])
        with pytest.raises(CheckpointError) as excinfo:
            read_checkpoint(folder)
        assert_one_line_error(excinfo, str(folder / "model.bin"), "truncated or corrupted")
        shutil.rmtree(folder)


def test_ct2_needs_tokenizer_json(tmp_path, tiny_en_ct2_dir):
    folder = ct2_folder(tmp_path, tiny_en_ct2_dir, files=("config.json", "vocabulary.txt"))
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(folder)
    assert_one_line_error(excinfo, "tokenizer.json is needed", "vocabulary.txt")


def upper_half_heads(dims):
    """openai's default alignment heads: every head of the upper half of the decoder's layers."""
    layers, heads = dims.n_text_layer, dims.n_text_head
    return [[layer, h] for layer in range(layers // 2, layers) for h in range(heads)]


@pytest.mark.parametrize("heads", [[[1, 0], [25, 3]], [[1, 0], [3, 6]], [1, 0], "all"])
def test_ct2_alignment_heads_of_another_model(tmp_path, tiny_en_ct2_dir, heads):
    """A folder whose alignment heads lie outside its layers or heads (tiny.en: 4 x 6), as a
    distilled model shipping its teacher's list has: a warning naming the file, and openai's default
    heads. It was a CheckpointError: the model could not be loaded at all."""
    folder = ct2_folder(tmp_path, tiny_en_ct2_dir)
    (folder / "config.json").write_text(json.dumps({"alignment_heads": heads}))
    with pytest.warns(WhispermsWarning) as caught:
        ckpt = read_checkpoint(folder)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert str(folder / "config.json") in str(caught[0].message)
    assert "alignment_heads" in str(caught[0].message)
    assert ckpt.alignment_heads == upper_half_heads(ckpt.dims)


def test_huggingface_alignment_heads_of_another_model(tmp_path, tiny):
    folder = hf_folder(tmp_path / "hf", tiny, heads=((2, 2), (31, 19)))
    with pytest.warns(WhispermsWarning, match="generation_config.json: alignment_heads"):
        ckpt = read_checkpoint(folder)
    assert ckpt.alignment_heads == upper_half_heads(tiny.dims)


def test_whisperms_folder_alignment_heads_stay_checked(tmp_path, tiny):
    """whisperms writes its own folders' heads: a wrong list there is damage, an error."""
    dst = save_checkpoint(tiny, tmp_path / "ckpt")
    config = json.loads((dst / "config.json").read_text())
    config["alignment_heads"] = [[1, 0], [4, 0]]
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(dst)
    assert_one_line_error(excinfo, "config.json", "alignment_heads")


def test_ct2_config_not_json(tmp_path, tiny_en_ct2_dir):
    folder = ct2_folder(tmp_path, tiny_en_ct2_dir)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(folder)
    assert_one_line_error(excinfo, "config.json", "not valid JSON")


def test_model_name_from_dims():
    def dims(state, layers, mels=80, vocab=51865, text_layers=None):
        return ModelDimensions(
            mels,
            1500,
            state,
            state // 64,
            layers,
            vocab,
            448,
            state,
            state // 64,
            text_layers or layers,
        )

    assert model_name(TINY_EN_DIMS) == "tiny.en"
    assert model_name(BASE_DIMS) == "base"
    assert model_name(dims(768, 12, vocab=51864)) == "small.en"
    assert model_name(dims(1024, 24)) == "medium"
    assert model_name(dims(1280, 32)) == "large-v2"
    assert model_name(dims(1280, 32, mels=128, vocab=51866)) == "large-v3"
    assert model_name(dims(1280, 32, mels=128, vocab=51866, text_layers=4)) == "large-v3-turbo"
    assert model_name(dims(1280, 32, mels=128, vocab=51866, text_layers=2)) == "distil-large-v3"
    assert model_name(dims(1024, 24, vocab=51864, text_layers=2)) == "distil-medium.en"
    assert model_name(dims(256, 3)) is None


# --- Hugging Face
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shards", [1, 3])
def test_huggingface_folder(tmp_path, tiny, shards):
    folder = hf_folder(tmp_path / "hf", tiny, shards=shards)
    assert detect_format(folder) == "huggingface"
    if shards > 1:
        assert not (folder / "model.safetensors").exists()
        assert len(list(folder.glob("model-0000?-of-00003.safetensors"))) == 3
    ckpt = read_checkpoint(folder)
    assert ckpt.dims == tiny.dims
    assert ckpt.name == "tiny.en"
    assert ckpt.alignment_heads == [[2, 2], [3, 0]]
    assert ckpt.source["format"] == "huggingface"
    assert ckpt.tokenizer_path == folder / "tokenizer.json"
    assert sorted(ckpt.state) == sorted(tiny.state)
    for name, value in tiny.state.items():
        assert ckpt.state[name].dtype == value.dtype, name
        np.testing.assert_array_equal(ckpt.state[name], value, err_msg=name)


def test_huggingface_untied_projection_and_missing_tensor(tmp_path, tiny):
    other = tiny.state["decoder.token_embedding.weight"].copy()
    other[0, 0] += 1
    with pytest.raises(CheckpointError) as excinfo:
        read_huggingface(hf_folder(tmp_path / "untied", tiny, proj_out=other))
    assert_one_line_error(excinfo, "proj_out.weight")

    folder = hf_folder(tmp_path / "sharded", tiny, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.encoder.layers.9.fc1.weight"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as excinfo:
        read_huggingface(folder)
    assert_one_line_error(
        excinfo,
        "model.safetensors.index.json",
        "model.encoder.layers.9.fc1.weight is listed in the index but not found",
    )

    index["weight_map"].pop("model.encoder.layers.9.fc1.weight")
    index["weight_map"].pop("model.decoder.layers.1.fc2.bias")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as excinfo:
        read_huggingface(folder)
    assert_one_line_error(excinfo, "model.decoder.layers.1.fc2.bias is not listed in the index")

    single = hf_folder(tmp_path / "incomplete", tiny)
    tensors = read_safetensors(single / "model.safetensors")
    del tensors["model.decoder.layers.3.encoder_attn.k_proj.weight"]
    save_file(tensors, str(single / "model.safetensors"))
    with pytest.raises(CheckpointError) as excinfo:
        read_huggingface(single)
    assert_one_line_error(
        excinfo, "missing tensor model.decoder.layers.3.encoder_attn.k_proj.weight"
    )


def test_huggingface_garbage_safetensors(tmp_path, tiny):
    folder = hf_folder(tmp_path / "hf", tiny)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    for blob in (
        np.random.default_rng(0).bytes(4096),
        good[: len(good) // 2],
        b"\x10\0\0\0\0\0\0\0{not json}}}}}}",
    ):
        weights.write_bytes(blob)
        with pytest.raises(CheckpointError) as excinfo:
            read_checkpoint(folder)
        assert_one_line_error(excinfo, str(weights), "truncated or corrupted")


def test_safetensors_bfloat16(tmp_path):
    values = np.array([[1.0, -2.5, 3.140625], [0.0, 1e-3, 65504.0]], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, len(bf16)]},
        }
    ).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16)
    w = read_safetensors(path)["w"]
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, (values.view(np.uint32) & 0xFFFF0000).view(np.float32))


# --- whisperms folders
# --------------------------------------------------------------------------------------------------
def test_save_and_read_whisperms_float32(tmp_path, tiny):
    dst = save_checkpoint(tiny, tmp_path / "out" / "tiny.en")
    assert sorted(os.listdir(tmp_path / "out")) == ["tiny.en"]
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((dst / "config.json").read_text())
    assert config["format_version"] == 1 and config["name"] == "tiny.en"
    assert config["dims"] == TINY_EN_DIMS.to_dict()
    assert config["alignment_heads"] == tiny.alignment_heads
    assert config["source"]["format"] == "ctranslate2"
    assert (dst / "tokenizer.json").read_bytes() == tiny.tokenizer_path.read_bytes()
    assert detect_format(dst) == "whisperms"
    back = read_whisperms(dst)
    assert (back.dims, back.name, back.alignment_heads, back.source) == (
        tiny.dims,
        tiny.name,
        tiny.alignment_heads,
        tiny.source,
    )
    assert back.tokenizer_path == dst / "tokenizer.json"
    assert sorted(back.state) == sorted(tiny.state)
    for name, value in tiny.state.items():
        assert back.state[name].dtype == np.float32
        np.testing.assert_array_equal(back.state[name], value.astype(np.float32), err_msg=name)


def test_save_float16_rounds(tmp_path, tiny):
    rng = np.random.default_rng(0)
    state32 = {
        k: v.astype(np.float32) * np.float32(1 + 1e-3)
        + rng.normal(0, 1e-6, v.shape).astype(np.float32)
        for k, v in tiny.state.items()
    }
    ckpt = Checkpoint(
        tiny.dims, state32, tiny.alignment_heads, tiny.tokenizer_path, tiny.name, tiny.source
    )
    back = read_checkpoint(save_checkpoint(ckpt, tmp_path / "fp16", dtype="float16"))
    changed = 0
    for name, value in state32.items():
        assert back.state[name].dtype == np.float16
        got = back.state[name].astype(np.float32)
        np.testing.assert_allclose(got, value, rtol=2**-11, atol=2**-25, err_msg=name)
        changed += int(np.any(got != value))
    assert changed > len(state32) // 2  # the values really went through float16


def test_convert_refuses_a_destination_before_reading(tmp_path, tiny_en_ct2_dir):
    """A destination that may not be written is refused before the source is read (gigabytes for
    a large model, where memory could run out first): here a source that fails when read."""
    data = (tiny_en_ct2_dir / "model.bin").read_bytes()
    source = ct2_folder(tmp_path, tiny_en_ct2_dir, model_bin=data[: len(data) // 2])
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    for dst, overwrite, said in (
        (notes, False, "already exists and is not empty"),
        (notes, True, "not a whisperms checkpoint folder"),
        (notes / "keep.txt", False, "is a file"),
    ):
        with pytest.raises(CheckpointError) as excinfo:
            convert(source, dst, overwrite=overwrite)
        assert_one_line_error(excinfo, str(dst), said)
    with pytest.raises(OptionsError, match="dtype must be one of"):
        convert(source, tmp_path / "new", dtype="int8")
    assert (notes / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_save_refuses_to_overwrite(tmp_path, tiny):
    dst = save_checkpoint(tiny, tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(tiny, dst)
    assert_one_line_error(excinfo, str(dst), "overwrite=True")
    renamed = Checkpoint(tiny.dims, tiny.state, None, tiny.tokenizer_path, "renamed", tiny.source)
    save_checkpoint(renamed, dst, overwrite=True)
    # no alignment heads given: openai's default, every head of the upper half of the layers
    back = read_whisperms(dst)
    assert back.name == "renamed" and back.alignment_heads == upper_half_heads(tiny.dims)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(tiny, other, overwrite=True)
    assert_one_line_error(excinfo, "not a whisperms checkpoint")
    assert os.listdir(other) == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_whisperms(save_checkpoint(tiny, empty)).name == "tiny.en"

    # a file, even an empty one, is no folder to write: --overwrite was suggested, then refused
    a_file = tmp_path / "afile.txt"
    a_file.touch()
    for overwrite in (False, True):
        with pytest.raises(CheckpointError) as excinfo:
            save_checkpoint(tiny, a_file, overwrite=overwrite)
        assert str(excinfo.value) == f"{a_file}: is a file, not a folder"
    assert a_file.read_bytes() == b""


def test_a_checkpoint_is_written_through_a_symbolic_link(tmp_path, tiny):
    """weights/tiny.en a link to a folder on a bigger disk: the checkpoint goes into the link's
    target (the temporary folder was made beside the link's own name, and the rename onto the link
    failed with 'Not a directory' after the whole write); with overwrite the target is replaced and
    the link kept (the link was replaced by a folder, its target left with the old weights). An
    empty folder is filled in place (a mount point cannot be renamed onto), as this one is."""
    disk = tmp_path / "disk" / "tiny.en"
    disk.mkdir(parents=True)
    link = tmp_path / "weights" / "tiny.en"
    link.parent.mkdir()
    link.symlink_to(disk)
    assert save_checkpoint(tiny, link) == link
    assert read_whisperms(disk).name == "tiny.en" and link.is_symlink()
    save_checkpoint(replace(tiny, name="renamed"), link, overwrite=True)
    assert link.is_symlink() and read_whisperms(disk).name == "renamed"
    assert os.listdir(link.parent) == ["tiny.en"]  # nothing left beside the link
    assert sorted(os.listdir(disk.parent)) == ["tiny.en"]


def test_save_failure_leaves_nothing(tmp_path, tiny):
    broken = Checkpoint(tiny.dims, tiny.state, None, tmp_path / "no-such-tokenizer.json", "x", {})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(broken, out / "ckpt")
    assert_one_line_error(excinfo, "no-such-tokenizer.json")
    assert os.listdir(out) == []  # neither the checkpoint nor a temporary folder

    good = save_checkpoint(tiny, out / "good")  # a failed overwrite keeps the old checkpoint
    with pytest.raises(CheckpointError):
        save_checkpoint(broken, good, overwrite=True)
    assert os.listdir(out) == ["good"]
    assert read_whisperms(good).name == "tiny.en"

    with pytest.raises(OptionsError, match="bfloat16"):
        save_checkpoint(tiny, out / "bf16", dtype="bfloat16")
    assert os.listdir(out) == ["good"]

    (tmp_path / "a-file").write_text("")
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(tiny, tmp_path / "a-file" / "ckpt")
    assert_one_line_error(excinfo, "a-file")
    assert sorted(os.listdir(tmp_path)) == ["a-file", "out"]


def test_convert_ct2_to_whisperms(tmp_path, tiny, tiny_en_ct2_dir):
    dst = convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    back = read_checkpoint(dst)
    assert detect_format(dst) == "whisperms"
    assert back.dims == tiny.dims and back.name == "tiny.en"
    assert back.source["path"] == str(tiny_en_ct2_dir.resolve())
    np.testing.assert_array_equal(
        back.state["decoder.blocks.3.mlp.2.weight"],
        tiny.state["decoder.blocks.3.mlp.2.weight"].astype(np.float32),
    )


def test_whisperms_garbage_and_mismatched(tmp_path, tiny):
    dst = save_checkpoint(tiny, tmp_path / "ckpt", dtype="float16")
    (dst / "model.safetensors").write_bytes(b"\xff" * 100)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(dst)
    assert_one_line_error(excinfo, str(dst / "model.safetensors"))

    state = dict(tiny.state)
    del state["decoder.blocks.1.mlp_ln.bias"]
    save_file(state, str(dst / "model.safetensors"))
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(dst)
    assert_one_line_error(excinfo, "missing tensor decoder.blocks.1.mlp_ln.bias")

    config = json.loads((dst / "config.json").read_text())
    config["format_version"] = 2
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(dst)
    assert_one_line_error(excinfo, "format_version 2")


def test_unknown_and_missing_folders(tmp_path, tiny_en_ct2_dir):
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(tmp_path / "absent")
    assert_one_line_error(excinfo, "absent", "no such checkpoint folder")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(weights)  # the file for its folder
    assert_one_line_error(excinfo, str(weights), "a file; give the checkpoint folder it is in")
    openai_file = tmp_path / "tiny.en.pt"
    openai_file.write_bytes(b"PK")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(openai_file)
    assert_one_line_error(excinfo, "a torch checkpoint (openai-whisper's .pt)", "Hugging Face")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "weights.pt").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError) as excinfo:
        detect_format(odd)
    assert_one_line_error(excinfo, str(odd), "expected model.bin")

    split = tmp_path / "split"  # a split model.bin is not a CTranslate2 folder by itself
    split.mkdir()
    os.symlink(tiny_en_ct2_dir / "model.bin", split / "model.bin.part1")
    with pytest.raises(CheckpointError):
        read_checkpoint(split)

    with pytest.raises(CheckpointError) as excinfo:
        read_ctranslate2(odd)
    assert_one_line_error(excinfo, "model.bin")
    with pytest.raises(CheckpointError) as excinfo:
        read_huggingface(odd)
    assert_one_line_error(excinfo, "config.json")


# --- loading into the network
# -----------------------------------------------------------------------------------
def test_assign_state_loads_every_parameter(tiny, tiny_model):
    assign_state(tiny_model, tiny.state)
    for name, param in tiny_model.parameters_and_names():
        np.testing.assert_array_equal(
            param.asnumpy(), tiny.state[name].astype(np.float32), err_msg=name
        )


def test_assign_state_strict(tiny, tiny_model):
    names = [name for name, _ in tiny_model.parameters_and_names()]
    dropped = dict(tiny.state)
    del dropped[names[40]], dropped[names[7]]
    with pytest.raises(CheckpointError, match=rf"^missing parameter {names[7]}$"):
        assign_state(tiny_model, dropped)

    extra = dict(tiny.state)
    extra["decoder.blocks.4.attn.key.weight"] = np.zeros((D, D), np.float16)
    extra["encoder.proj.weight"] = np.zeros((D, D), np.float16)
    with pytest.raises(
        CheckpointError, match=r"^unexpected tensor decoder\.blocks\.4\.attn\.key\.weight$"
    ):
        assign_state(tiny_model, extra)

    reshaped = dict(tiny.state)
    reshaped["encoder.blocks.2.mlp.0.weight"] = np.zeros((D, 4 * D), np.float16)
    with pytest.raises(CheckpointError) as excinfo:
        assign_state(tiny_model, reshaped)
    assert str(excinfo.value) == (
        "shape mismatch for encoder.blocks.2.mlp.0.weight: "
        "checkpoint (384, 1536) vs model (1536, 384)"
    )


def test_a_damaged_tokenizer_or_head_count_is_one_line(tmp_path, tiny):
    """A tokenizer.json cut short: convert refuses it (it was copied, and loading the folder ended
    in the parser's traceback), and so does loading. A head count that does not divide the width
    (config.json edited): one line naming it (a MindSpore traceback from inside the network)."""
    from whisperms.tokenizer import check_tokenizer_file

    broken = tmp_path / "tokenizer.json"
    broken.write_bytes(tiny.tokenizer_path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(replace(tiny, tokenizer_path=broken), tmp_path / "out")
    assert_one_line_error(excinfo, str(broken), "not a valid tokenizer file")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError):
        check_tokenizer_file(broken)
    good = save_checkpoint(tiny, tmp_path / "good")
    config = json.loads((good / "config.json").read_text())
    for heads, message in ((5, "n_audio_head 5 does not divide n_audio_state 384"),
                           (0, "n_audio_head 0 does not divide")):  # fmt: skip
        config["dims"]["n_audio_head"] = heads
        (good / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError) as excinfo:
            read_whisperms(good)
        assert_one_line_error(excinfo, message)


def test_a_conversion_does_not_replace_one_written_meanwhile(tmp_path, tiny):
    """Two conversions into one new folder at once, without overwrite: the one that finishes second
    fails (both succeeded, the second silently replacing the first's), and leaves the first's."""
    from whisperms.checkpoint_folder import move_into_place

    first = save_checkpoint(tiny, tmp_path / "ckpt")
    second = tmp_path / ".ckpt.partial-test"
    second.mkdir()
    (second / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        move_into_place(second, first, overwrite=False)
    assert read_whisperms(first).dims == tiny.dims


def test_two_conversions_into_one_empty_folder(tmp_path, tiny):
    """An empty folder (a mount point) that two conversions fill at once: each took the other's
    temporary folder inside it for contents, so both failed, one at once and the other after its
    whole conversion. Now the first to finish fills it, and the other fails."""
    from whisperms.checkpoint_folder import fill_in_place, scratch

    folder = tmp_path / "empty"
    folder.mkdir()
    other = scratch(folder, folder.name, "partial")  # this process's own: a running conversion
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"\0" * 1000)
    assert save_checkpoint(tiny, folder, dtype="float16") == folder
    assert read_whisperms(folder).name == "tiny.en"
    assert sorted(os.listdir(folder)) == sorted(CHECKPOINT_FILES + [other.name])
    (other / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="written meanwhile"):
        fill_in_place(other, folder, "config.json", replacing=False)
    assert read_whisperms(folder).name == "tiny.en"


@pytest.fixture
def mount_point(tmp_path):
    """An empty tmpfs mounted on a folder, as a container's volume is: it cannot be renamed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    folder = tmp_path / "volume"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(folder)])
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)])


def test_a_mount_point_is_filled_and_replaced_in_place(tmp_path, tiny, mount_point):
    """A volume (a container's, a fresh ext4 one with its lost+found): it was not taken for empty,
    so neither written nor, with --overwrite, replaced ("not a whisperms checkpoint folder"); and
    --overwrite onto one holding a checkpoint renamed the earlier checkpoint aside first, which a
    mount point refuses, so the conversion failed with "Device or resource busy" after all its
    work. Now it is filled, and its checkpoint's files replaced, in place; what else it holds is
    left alone."""
    (mount_point / "lost+found").mkdir()
    save_checkpoint(tiny, mount_point, dtype="float16")
    (mount_point / "notes.txt").write_text("the user's\n")
    save_checkpoint(replace(tiny, name="renamed"), mount_point, dtype="float16", overwrite=True)
    assert read_whisperms(mount_point).name == "renamed"
    assert sorted(os.listdir(mount_point)) == sorted(CHECKPOINT_FILES + ["lost+found", "notes.txt"])
    assert os.listdir(tmp_path) == ["volume"]  # nothing left beside it
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        save_checkpoint(tiny, mount_point)


def test_a_replacement_stopped_midway_can_be_overwritten(tmp_path, tiny):
    """A checkpoint replaced in place and stopped between two moves (Ctrl-C) holds a checkpoint's
    files but no config.json: --overwrite refused it as "not a whisperms checkpoint folder", for
    good. A folder of other files is still refused."""
    half = tmp_path / "half"
    half.mkdir()
    (half / WEIGHTS_FILE).write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        save_checkpoint(tiny, half, dtype="float16")
    save_checkpoint(tiny, half, dtype="float16", overwrite=True)
    assert read_whisperms(half).name == "tiny.en"
    other = tmp_path / "other"
    other.mkdir()
    (other / WEIGHTS_FILE).write_bytes(b"\0" * 100)
    (other / "notes.txt").write_text("the user's\n")
    with pytest.raises(CheckpointError, match="not a whisperms checkpoint folder"):
        save_checkpoint(tiny, other, dtype="float16", overwrite=True)


def test_the_temporary_folders_of_conversions_that_died(tmp_path, tiny):
    """A conversion's temporary folder is removed once its writer is gone, told by its lock as well
    as its process id (an id in another container, which shares the host name, is not this
    machine's process); an earlier checkpoint set aside to be replaced, whose replacement never
    came, is put back where it was deleted."""
    from whisperms.checkpoint_folder import _locked, remove_abandoned

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host, gone = socket.gethostname(), child.pid
    real = tmp_path / "tiny.en"
    held = tmp_path / f".tiny.en.partial-{host}-{gone}-0123abcd"
    held.mkdir()
    with _locked(held, wait=True):  # written by a live process the id does not find
        remove_abandoned(real)
        assert held.exists()
    remove_abandoned(real)
    assert not held.exists()
    aside = save_checkpoint(tiny, tmp_path / f".tiny.en.old-{host}-{gone}-89abcdef", "float16")
    other = tmp_path / f".tiny.end.partial-{host}-{gone}-89abcdef"  # another folder's
    other.mkdir()
    remove_abandoned(real)
    assert read_whisperms(real).name == "tiny.en" and not aside.exists() and other.exists()


def test_scratch_names_are_told_apart():
    from whisperms.checkpoint_folder import _scratch_owner, scratch

    made = scratch(Path("/x"), "large-v3", "partial").name
    assert _scratch_owner(made, "large-v3")[0] == "partial"
    assert _scratch_owner(made, "large") is None
    assert _scratch_owner(".tiny.en.old-a-b.c-12-77-0123abcd", "tiny.en") == ("old", "a-b.c-12", 77)
    assert _scratch_owner(".tiny.en.old-a-b.c-12-77-0123abcd", "tiny") is None
    assert _scratch_owner(".tiny.en.other-h-77-0123abcd", "tiny.en") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_a_full_disk_is_one_line(tmp_path, tiny):
    """Converting onto a disk that fills up: one line (safetensors' own error was a traceback), and
    no partial folder left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)])
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(CheckpointError) as excinfo:
            save_checkpoint(tiny, disk / "ckpt")
        assert_one_line_error(excinfo, "cannot write the checkpoint")
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)])
