"""Merges a byte-level BPE tokenizer.json lacks, restored from its vocabulary.

A tokenizer.json whose merge list lost entries cannot produce some vocabulary tokens: the
multilingual tokenizer.json shipped with the base weights used by the tests lacks "Ġ t", so " the"
became [220, 3322] instead of [264], and every prompt with a word starting in "t" was encoded
otherwise than openai-whisper's tiktoken encodes it (and the transcript changed with it). A BPE
vocabulary ranks its tokens in the order their merges were learned, so each missing merge goes back
where its token's id puts it, made of two tokens of lower ids that spell it."""

from typing import Dict, List


def _pair(merge):
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge)


def restore_missing_merges(model: dict, special: set) -> int:
    """Put back into `model` (a tokenizer.json's "model": vocab and merges) a merge for every
    token of more than one character that no merge makes, `special` (added tokens) aside; the
    number restored."""
    vocab: Dict[str, int] = model.get("vocab") or {}
    merges: List = model.get("merges") or []
    made = {"".join(_pair(m)) for m in merges}
    missing = sorted(
        (rank, token)
        for token, rank in vocab.items()
        if len(token) > 1 and token not in made and token not in special
    )
    restored = []
    for rank, token in missing:
        splits = [
            (token[:k], token[k:])
            for k in range(1, len(token))
            if vocab.get(token[:k], rank) < rank and vocab.get(token[k:], rank) < rank
        ]
        if splits:  # the split whose later part was learned first
            restored.append((rank, min(splits, key=lambda s: max(vocab[s[0]], vocab[s[1]]))))
    if not restored:
        return 0
    as_text = not merges or isinstance(merges[0], str)
    merged = list(merges)
    for rank, pair in reversed(restored):  # each before the first merge of a later token
        at = next(
            (i for i, m in enumerate(merged) if vocab.get("".join(_pair(m)), rank) > rank),
            len(merged),
        )
        merged.insert(at, " ".join(pair) if as_text else list(pair))
    model["merges"] = merged
    return len(restored)
