"""The name maps, once: each parameter of the network under its openai name (the Cell parameter
names of `whisperms.model.Whisper`), its shape, and where CTranslate2 and Hugging Face keep it
(`layout`); convert.py's readers map a checkpoint's tensors through them."""

from __future__ import annotations

from dataclasses import dataclass

from .model import ModelDimensions

# Top level: (openai name, shape from dims, CTranslate2 variable, Hugging Face tensor).
TOP_LEVEL = [
    (
        "encoder.conv1.weight",
        lambda d: (d.n_audio_state, d.n_mels, 3),
        "encoder/conv1/weight",
        "model.encoder.conv1.weight",
    ),
    (
        "encoder.conv1.bias",
        lambda d: (d.n_audio_state,),
        "encoder/conv1/bias",
        "model.encoder.conv1.bias",
    ),
    (
        "encoder.conv2.weight",
        lambda d: (d.n_audio_state, d.n_audio_state, 3),
        "encoder/conv2/weight",
        "model.encoder.conv2.weight",
    ),
    (
        "encoder.conv2.bias",
        lambda d: (d.n_audio_state,),
        "encoder/conv2/bias",
        "model.encoder.conv2.bias",
    ),
    (
        "encoder.positional_embedding",
        lambda d: (d.n_audio_ctx, d.n_audio_state),
        "encoder/position_encodings/encodings",
        "model.encoder.embed_positions.weight",
    ),
    (
        "encoder.ln_post.weight",
        lambda d: (d.n_audio_state,),
        "encoder/layer_norm/gamma",
        "model.encoder.layer_norm.weight",
    ),
    (
        "encoder.ln_post.bias",
        lambda d: (d.n_audio_state,),
        "encoder/layer_norm/beta",
        "model.encoder.layer_norm.bias",
    ),
    (
        "decoder.token_embedding.weight",
        lambda d: (d.n_vocab, d.n_text_state),
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    ),
    (
        "decoder.positional_embedding",
        lambda d: (d.n_text_ctx, d.n_text_state),
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    ),
    (
        "decoder.ln.weight",
        lambda d: (d.n_text_state,),
        "decoder/layer_norm/gamma",
        "model.decoder.layer_norm.weight",
    ),
    (
        "decoder.ln.bias",
        lambda d: (d.n_text_state,),
        "decoder/layer_norm/beta",
        "model.decoder.layer_norm.bias",
    ),
]

# Per block: (openai module, CTranslate2 module, part, parts, Hugging Face module, kind).
# CTranslate2 fuses the self-attention q,k,v (parts of 3) and the cross-attention k,v (parts of 2)
# along the output axis; the fused bias holds a key part that openai's model does not have (it is
# zero, and a key bias cancels in the softmax anyway).
BLOCK = [
    ("attn.query", "self_attention/linear_0", 0, 3, "self_attn.q_proj", "linear"),
    ("attn.key", "self_attention/linear_0", 1, 3, "self_attn.k_proj", "linear_no_bias"),
    ("attn.value", "self_attention/linear_0", 2, 3, "self_attn.v_proj", "linear"),
    ("attn.out", "self_attention/linear_1", 0, 1, "self_attn.out_proj", "linear"),
    ("attn_ln", "self_attention/layer_norm", 0, 1, "self_attn_layer_norm", "norm"),
    ("cross_attn.query", "attention/linear_0", 0, 1, "encoder_attn.q_proj", "linear"),
    ("cross_attn.key", "attention/linear_1", 0, 2, "encoder_attn.k_proj", "linear_no_bias"),
    ("cross_attn.value", "attention/linear_1", 1, 2, "encoder_attn.v_proj", "linear"),
    ("cross_attn.out", "attention/linear_2", 0, 1, "encoder_attn.out_proj", "linear"),
    ("cross_attn_ln", "attention/layer_norm", 0, 1, "encoder_attn_layer_norm", "norm"),
    ("mlp.0", "ffn/linear_0", 0, 1, "fc1", "mlp_in"),
    ("mlp.2", "ffn/linear_1", 0, 1, "fc2", "mlp_out"),
    ("mlp_ln", "ffn/layer_norm", 0, 1, "final_layer_norm", "norm"),
]
# kind -> [(openai leaf, CTranslate2 leaf, shape from the block width n)]
LEAVES = {
    "linear": [("weight", "weight", lambda n: (n, n)), ("bias", "bias", lambda n: (n,))],
    "linear_no_bias": [("weight", "weight", lambda n: (n, n))],
    "norm": [("weight", "gamma", lambda n: (n,)), ("bias", "beta", lambda n: (n,))],
    "mlp_in": [("weight", "weight", lambda n: (4 * n, n)), ("bias", "bias", lambda n: (4 * n,))],
    "mlp_out": [("weight", "weight", lambda n: (n, 4 * n)), ("bias", "bias", lambda n: (n,))],
}
# Hugging Face's output projection, tied to decoder.embed_tokens
HF_TIED_OUTPUT = "proj_out.weight"
# the same in CTranslate2 (an alias of decoder/embeddings/weight)
CT2_TIED_OUTPUT = "decoder/projection/weight"


@dataclass(frozen=True)
class Entry:
    name: str  # openai name
    shape: tuple
    ct2: str  # CTranslate2 variable
    part: int  # index of this tensor in a fused CTranslate2 variable
    parts: int
    hf: str  # Hugging Face tensor


def layout(dims: ModelDimensions):
    """Every tensor of a Whisper of these dims, with its name in each format."""
    entries = [Entry(name, shape(dims), ct2, 0, 1, hf) for name, shape, ct2, hf in TOP_LEVEL]
    for side, n, layers in (
        ("encoder", dims.n_audio_state, dims.n_audio_layer),
        ("decoder", dims.n_text_state, dims.n_text_layer),
    ):
        for i in range(layers):
            for module, ct2, part, parts, hf, kind in BLOCK:
                if side == "encoder" and module.startswith("cross_attn"):
                    continue
                for leaf, ct2_leaf, shape in LEAVES[kind]:
                    entries.append(
                        Entry(
                            f"{side}.blocks.{i}.{module}.{leaf}",
                            shape(n),
                            f"{side}/layer_{i}/{ct2}/{ct2_leaf}",
                            part,
                            parts,
                            f"model.{side}.layers.{i}.{hf}.{leaf}",
                        )
                    )
    return entries


def state_shapes(dims: ModelDimensions) -> dict:
    """openai name -> shape of every parameter of `Whisper(dims)`."""
    return {e.name: e.shape for e in layout(dims)}
