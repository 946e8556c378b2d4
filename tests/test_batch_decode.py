"""Batched decode(): several windows in one batch give each window exactly what it gets alone, also
when windows join a batch already decoding."""

import numpy as np
import pytest

from whisperms import DecodingOptions, OptionsError
from whisperms.decoding import BatchDecodingTask, DecodingTask

from conftest import DATA, read_manifest, window_mel

TIMESTAMP_BEGIN = 50363  # tiny.en's <|0.00|>
# Eight different English dev windows of different lengths.
ENGLISH = [r["file"] for r in read_manifest() if r["language"] == "en"]
CLIPS = ENGLISH[:8]
# Previous-text prompts of different lengths, so the rows' initial tokens and positions differ:
# none, short ones fed through the step graph, longer ones through the prompt graph's buckets.
PROMPTS = [
    None,
    "Hi.",
    "The weather was cold.",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    None,
    "Yes.",
    "Ladies and gentlemen, thank you for coming tonight; we have a long programme ahead of us.",
    "Chapter one.",
]


@pytest.fixture(scope="module")
def mels():
    assert len(CLIPS) == 8
    return np.stack([window_mel(DATA / name) for name in CLIPS])


def _alone_and_batched(model, mels, options):
    batched = model.decode(mels, options)
    alone = [model.decode(mel, row) for mel, row in zip(mels, options)]
    return alone, batched


@pytest.mark.parametrize("beam_size", [None, 5], ids=["greedy", "beam5"])
def test_each_row_gets_exactly_its_tokens_alone(tiny_en_model, mels, beam_size):
    """Greedy and beam 5, with timestamps, prompts of different lengths: token for token."""
    options = [DecodingOptions(language="en", beam_size=beam_size, prompt=p) for p in PROMPTS]
    alone, batched = _alone_and_batched(tiny_en_model, mels, options)
    assert isinstance(batched, list) and len(batched) == len(CLIPS)
    assert sum(t >= TIMESTAMP_BEGIN for r in batched for t in r.tokens) >= 2 * len(CLIPS)
    for name, one, many in zip(CLIPS, alone, batched):
        assert many.tokens == one.tokens, name
        assert many.text == one.text
        assert many.tokens[0] >= TIMESTAMP_BEGIN, name  # timestamp mode: a timestamp comes first
        assert many.avg_logprob == pytest.approx(one.avg_logprob, abs=1e-3)
        assert many.no_speech_prob == pytest.approx(one.no_speech_prob, abs=1e-4)


@pytest.mark.parametrize("beam_size", [None, 5], ids=["greedy", "beam5"])
def test_windows_joining_a_running_batch_get_exactly_their_tokens_alone(
    tiny_en_model, mels, beam_size
):
    """Continuous batching (WindowSlots): windows join a batch already decoding, at different
    steps, growing it (2 slots to 4 to 8) and taking slots freed by windows that ended; windows with
    prompts of different lengths join with their prompts run (start_batch), windows without one
    (PROMPTS 0 and 4) have their prompt fed through the batch's own steps; each window's tokens are
    still exactly its tokens alone."""
    options = [DecodingOptions(language="en", beam_size=beam_size, prompt=p) for p in PROMPTS]
    tasks = [DecodingTask(tiny_en_model, o) for o in options]
    features = [tiny_en_model.inference.embed_audio(mel[None]) for mel in mels]

    def windows(indices):
        batch = BatchDecodingTask([tasks[i] for i in indices], keys=indices)
        return batch.start([features[i] for i in indices])

    slots = BatchDecodingTask(tasks[:1]).slots(limit=8)
    results = {}
    slots.join(*windows([1, 2]))
    for _ in range(5):
        results.update(slots.step(shrink=False))
    assert not results and slots.n_slots == 2
    state, cache = windows([0, 4])
    assert state.prompt is not None and cache.length.max() == 0  # fed by the batch's steps
    slots.join(state, cache)
    assert slots.n_slots == 4 and slots.occupied == 4
    while not results:
        results.update(slots.step(shrink=False))
    slots.join(*windows([3, 5, 6, 7]))
    assert slots.n_slots == 8 and slots.occupied == 8 - len(results)
    while slots.busy:
        results.update(slots.step())
    alone = [tiny_en_model.decode(mel, o) for mel, o in zip(mels, options)]
    assert sorted(results) == list(range(8))
    for i, name in enumerate(CLIPS):
        assert results[i].tokens == alone[i].tokens, name
        assert results[i].avg_logprob == pytest.approx(alone[i].avg_logprob, abs=1e-3)
        assert results[i].no_speech_prob == pytest.approx(alone[i].no_speech_prob, abs=1e-4)


def test_without_timestamps_and_a_prefix(tiny_en_model, mels):
    options = [
        DecodingOptions(language="en", without_timestamps=True, prefix="And" if i % 2 else None)
        for i in range(4)
    ]
    alone, batched = _alone_and_batched(tiny_en_model, mels[:4], options)
    assert [r.tokens for r in batched] == [r.tokens for r in alone]
    assert all(t < 50257 for r in batched for t in r.tokens)


PREFIXES = [None, "And", None, "Well, it was", None, None, "The", None]


@pytest.mark.parametrize("beam_size", [None, 5], ids=["greedy", "beam5"])
def test_repetition_rules_and_hotwords_in_a_batch(tiny_en_model, mels, beam_size):
    """faster-whisper's repetition_penalty, no_repeat_ngram_size and hotwords, with prompts and
    prefixes of different lengths (the rules read each row's prefix, which a batch's rows leave
    out): every row's tokens are its tokens alone, and the options change some rows' text."""
    rules = dict(repetition_penalty=1.4, no_repeat_ngram_size=2, hotwords="Kennedy")
    options = [
        DecodingOptions(language="en", beam_size=beam_size, prompt=p, prefix=f, **rules)
        for p, f in zip(PROMPTS, PREFIXES)
    ]
    alone, batched = _alone_and_batched(tiny_en_model, mels, options)
    for name, one, many in zip(CLIPS, alone, batched):
        assert many.tokens == one.tokens, name
        assert many.avg_logprob == pytest.approx(one.avg_logprob, abs=1e-3)
    plain = tiny_en_model.decode(
        mels,
        [
            DecodingOptions(language="en", beam_size=beam_size, prompt=p, prefix=f)
            for p, f in zip(PROMPTS, PREFIXES)
        ],
    )
    assert sum(a.tokens != b.tokens for a, b in zip(batched, plain)) >= 2
    for result in batched:  # no bigram twice, timestamps included (the rule reads them too)
        pairs = list(zip(result.tokens, result.tokens[1:]))
        assert len(pairs) == len(set(pairs)), result.text


def test_multilingual_rows_detect_their_own_language(base_model):
    """base, language=None: each window's language is detected alone and decoded with it."""
    rows = [r for r in read_manifest() if float(r["duration_s"]) < 30.0]
    picked = [next(r for r in rows if r["language"] == lang) for lang in ("en", "es", "fr", "pt")]
    mels = np.stack([window_mel(DATA / r["file"]) for r in picked])
    batched = base_model.decode(mels)
    alone = [base_model.decode(mel) for mel in mels]
    assert [r.language for r in batched] == [r.language for r in alone] == ["en", "es", "fr", "pt"]
    assert [r.tokens for r in batched] == [r.tokens for r in alone]
    assert all(r.language_probs for r in batched)


def test_best_of_samples_are_one_batch(tiny_en_model, mels):
    """temperature > 0 with best_of: every window's samples decode together, and each window gets
    one result, its best-ranked sample."""
    results = tiny_en_model.decode(mels[:3], temperature=0.2, best_of=3, language="en")
    assert len(results) == 3
    for result in results:
        assert result.temperature == 0.2 and np.isfinite(result.avg_logprob)
        assert result.tokens and result.text


def test_a_batch_of_one_is_a_list(tiny_en_model, mels):
    one = tiny_en_model.decode(mels[:1], language="en")
    assert (
        isinstance(one, list)
        and one[0].tokens == tiny_en_model.decode(mels[0], language="en").tokens
    )


def test_rows_that_differ_in_how_they_decode_are_refused(tiny_en_model, mels):
    with pytest.raises(OptionsError, match="may differ only in language, prompt and prefix"):
        tiny_en_model.decode(mels[:2], [DecodingOptions(), DecodingOptions(beam_size=5)])
    with pytest.raises(OptionsError, match="3 DecodingOptions given for 2 windows"):
        tiny_en_model.decode(mels[:2], [DecodingOptions()] * 3)
