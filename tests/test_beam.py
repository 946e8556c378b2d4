"""Beam search: CTranslate2's bookkeeping on hand-built logits, then text parity with faster-whisper
on real clips."""

import numpy as np
import pytest

from whisperms.token_selection import BeamSearchDecoder, beam_rows, rank_score

from conftest import DATA, faster_whisper_model, readme_claim, window_mel

EOT, V = 9, 10
_same, _all = readme_claim(
    r"Beam search \(beam 5\) vs faster-whisper on the same weights: the same text on "
    r"(\d+)/(\d+) clips under 30 s \(tiny\.en\)"
)
# README's claim, no margin: beam search is deterministic in both engines
MAX_DIFFERING = int(_all - _same)


def logits_for(rows):
    """Logits (len(rows), V) whose log-softmax puts the given probabilities on the given tokens."""
    out = np.full((len(rows), V), -50.0, np.float32)
    for r, probs in enumerate(rows):
        for token, p in probs.items():
            out[r, token] = np.log(p)
    return out


def test_first_step_keeps_best_unfinished_and_collects_finished():
    beam = BeamSearchDecoder(beam_size=2, eot=EOT)
    tokens = np.array([[5], [5]])  # identical prompts, as at the first step
    sum_logprobs = np.zeros(2)
    logits = logits_for([{1: 0.5, EOT: 0.3, 2: 0.2}] * 2)
    nxt, rows, completed = beam.update(tokens, logits, sum_logprobs)
    assert nxt.tolist() == [[5, 1], [5, 2]]  # EOT (0.3) is finished, not kept as a beam
    np.testing.assert_allclose(sum_logprobs, np.log([0.5, 0.2]), rtol=1e-5)
    assert list(beam.finished) == [(5, EOT)] and not completed  # 1 of max_candidates=2


def test_patience_sets_the_number_of_finished_candidates():
    for patience, expected in [(None, 2), (1.0, 2), (2.0, 4), (0.5, 1), (1.26, 3)]:
        assert BeamSearchDecoder(beam_size=2, eot=EOT, patience=patience).max_candidates == expected
    # rounded as CTranslate2 rounds (std::round: 2.5 is 3), not as Python's round (2)
    assert BeamSearchDecoder(beam_size=5, eot=EOT, patience=0.5).max_candidates == 3


def test_completed_when_enough_candidates_finish():
    beam = BeamSearchDecoder(beam_size=2, eot=EOT, patience=0.5)  # one finished candidate is enough
    tokens = np.array([[5, 1], [5, 2]])
    _, _, completed = beam.update(
        tokens, logits_for([{EOT: 0.9, 3: 0.1}, {4: 0.6, EOT: 0.4}]), np.zeros(2)
    )
    assert completed and list(beam.finished) == [(5, 1, EOT)]  # only the best finished one fits


def test_sources_follow_the_winning_rows():
    beam = BeamSearchDecoder(beam_size=2, eot=EOT)
    tokens = np.array([[5, 1], [5, 2]])
    # row 1's 0.45 * 0.9 = 0.405 beats row 0's 0.5 * 0.8 = 0.4
    sum_logprobs = np.log(np.array([0.5, 0.45]))
    nxt, rows, _ = beam.update(
        tokens, logits_for([{3: 0.1, 4: 0.1, 6: 0.8}, {7: 0.9, 8: 0.1}]), sum_logprobs
    )
    assert nxt.tolist() == [[5, 2, 7], [5, 1, 6]] and rows == [1, 0]


@pytest.mark.parametrize(
    "parents, expected",
    [
        ([1, 0, 2, 4, 3], [1, 0, 2, 4, 3]),  # every beam one continuation: no row changes
        ([2, 2, 0, 1], [2, 3, 0, 1]),  # row 3 ended; the second of row 2's continuations takes it
        ([3, 3, 3, 3], [3, 0, 1, 2]),
        ([0, 4, 0, 4, 1], [0, 4, 2, 3, 1]),
    ],
)
def test_beam_rows_keep_each_first_continuation_in_its_parents_row(parents, expected):
    rows = beam_rows(np.array(parents), len(parents))
    assert rows.tolist() == expected
    # each row holds one beam, and only the beams beyond a parent's first continuation move
    assert sorted(rows.tolist()) == list(range(len(parents)))
    assert (rows != parents).sum() == len(parents) - len(set(parents))


def test_a_search_the_length_limit_ends_takes_every_beam():
    """Fewer candidates finished than the search waits for: every beam is one (CTranslate2 takes
    its last step's; openai only as many as make beam_size)."""
    beam = BeamSearchDecoder(beam_size=3, eot=EOT)
    beam.finished = {(5, 1, EOT): -1.0}
    final = beam.finalize(np.array([[5, 2], [5, 3], [5, 4]]), np.array([-3.0, -0.5, -2.0]))
    assert final == {(5, 1, EOT): -1.0, (5, 3, EOT): -0.5, (5, 4, EOT): -2.0, (5, 2, EOT): -3.0}
    beam.finished.update({(5, 6, EOT): -4.0, (5, 7, EOT): -5.0})  # complete: nothing added
    assert beam.finalize(np.array([[5, 2], [5, 3], [5, 4]]), np.zeros(3)) == beam.finished


def test_an_ended_beams_place_goes_to_the_next_best_that_goes_on():
    """CTranslate2's rule where openai's differs: of the 2 * beam_size best continuations, an EOT
    among the first beam_size is finished and replaced by the next best that does not end; an EOT
    ranked later is not a finished candidate (openai counted every EOT ranked before the
    beam_size-th continuation that goes on). And a row's continuations are not limited to its
    beam_size + 1 best: here row 0's third token beats row 1's best."""
    beam = BeamSearchDecoder(beam_size=2, eot=EOT)
    tokens = np.array([[5, 1], [5, 2]])
    sums = np.log(np.array([0.9, 0.1]))
    logits = logits_for([{3: 0.4, 4: 0.3, 6: 0.2, EOT: 0.1}, {EOT: 0.6, 7: 0.4}])
    nxt, rows, _ = beam.update(tokens, logits, sums)
    # ranked: 3 (0.36), 4 (0.27), 6 (0.18), EOT of row 0 (0.09), EOT of row 1 (0.06), 7 (0.04)
    assert nxt.tolist() == [[5, 1, 3], [5, 1, 4]] and rows == [0, 0]
    assert beam.finished == {}  # both EOTs ranked past the first two: neither finished
    beam = BeamSearchDecoder(beam_size=2, eot=EOT)
    sums = np.log(np.array([0.5, 0.5]))
    logits = logits_for([{EOT: 0.7, 3: 0.3}, {4: 0.6, EOT: 0.4}])
    nxt, rows, _ = beam.update(tokens, logits, sums)
    # ranked: EOT of row 0 (0.35), 4 (0.30), EOT of row 1 (0.20), 3 (0.15): the first EOT is
    # finished and 3 takes its place; the second EOT, third, is not a candidate
    assert nxt.tolist() == [[5, 1, 3], [5, 2, 4]] and rows == [0, 1]
    assert list(beam.finished) == [(5, 1, EOT)]


def test_length_penalty_ranking():
    assert rank_score(-6.0, 3, None) == pytest.approx(-2.0)  # length-normalised
    # Google NMT ((5 + n) / 6) ** alpha
    assert rank_score(-6.0, 3, 1.0) == pytest.approx(-6.0 / (8 / 6))
    assert rank_score(-6.0, 3, 0.0) == pytest.approx(-6.0)
    # a longer sequence with a worse sum wins under length normalisation, loses under alpha = 0
    assert rank_score(-8.0, 8, None) > rank_score(-3.0, 2, None)
    assert rank_score(-8.0, 8, 0.0) < rank_score(-3.0, 2, 0.0)


def test_beam_text_matches_faster_whisper(tiny_en_model, tiny_en_ct2_dir, short_clips):
    pytest.importorskip("faster_whisper")
    fw = faster_whisper_model(tiny_en_ct2_dir)
    differing = []
    for row in short_clips:
        path = str(DATA / row["file"])
        ours = tiny_en_model.transcribe(
            path, beam_size=5, temperature=0.0, language="en"
        ).text.strip()
        segments, _ = fw.transcribe(
            path, beam_size=5, temperature=0.0, language="en", vad_filter=False
        )
        theirs = " ".join(s.text.strip() for s in segments)
        if ours != theirs:
            differing.append(row["file"])
            print(
                f"DIFFERS {row['file']}:\n  whisperms:      {ours!r}\n  faster-whisper: {theirs!r}"
            )
    print(f"same text on {len(short_clips) - len(differing)}/{len(short_clips)} clips")
    assert len(short_clips) == _all and len(differing) <= MAX_DIFFERING, differing


@pytest.mark.parametrize(
    "which, clip",
    [
        ("tiny.en", "librivox_shakespeare-sonnet-002.mp3"),
        # ~70 s: with the slow sweeps
        pytest.param("base", "librivox_de_simplicissimus-titlepage.mp3", marks=pytest.mark.slow),
    ],
)
def test_long_form_beam_search_matches_faster_whisper(request, which, clip):
    """Two long clips where openai's beam search, which whisperms ran, chose other texts than
    CTranslate2's on the same weights and samples ("praise." ending at 30.52 s for "praise," at
    29.96 s; "eines einfältigen Wunderlichen" for "eines einfältigen, wunderlichen"): with
    CTranslate2's search, every segment's text and times are faster-whisper's."""
    from faster_whisper.audio import decode_audio

    model = request.getfixturevalue("tiny_en_model" if which == "tiny.en" else "base_model")
    fw = faster_whisper_model(request.getfixturevalue(f"{which.replace('.', '_')}_ct2_dir"))
    audio = decode_audio(str(DATA / clip), sampling_rate=16000)  # the same samples for both
    ours = model.transcribe(audio, beam_size=5).segments
    theirs = list(fw.transcribe(audio, beam_size=5, vad_filter=False)[0])
    assert [s.text for s in ours] == [s.text for s in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a.start - b.start) <= 0.021 and abs(a.end - b.end) <= 0.021, (a, b)


def test_beam_decode_is_deterministic_and_ends_cleanly(tiny_en_model):
    mel = window_mel(DATA / "jfk_inaugural_1961.flac")
    a, b = tiny_en_model.decode(mel, beam_size=5), tiny_en_model.decode(mel, beam_size=5)
    assert a.tokens == b.tokens and a.tokens[0] == 50363 and 50256 not in a.tokens


def test_top_k_rows_equals_full_stable_sort():
    """The partial sort beam search uses picks what a full stable argsort of each row would, ties by
    index."""
    from whisperms.logprobs import top_k_rows

    values = np.array([[0.5, 2.0, -np.inf, 2.0, 1.0, 2.0, 0.5]] * 2)
    # three-way tie at the top: lowest first
    assert top_k_rows(values, 2).tolist() == [[1, 3]] * 2
    assert top_k_rows(values, 4).tolist() == [[1, 3, 5, 4]] * 2
    # tie at the cut: index 0 before 6
    assert top_k_rows(values, 6).tolist() == [[1, 3, 5, 4, 0, 6]] * 2
    assert top_k_rows(values, 9).tolist() == [[1, 3, 5, 4, 0, 6, 2]] * 2
    rng = np.random.default_rng(0)
    for _ in range(500):
        v = rng.integers(-3, 3, (rng.integers(1, 6), rng.integers(1, 40))).astype(np.float64)
        # suppressed tokens: some rows keep fewer than k values above -inf
        v[rng.random(v.shape) < rng.random()] = -np.inf
        k = int(rng.integers(1, 8))
        assert top_k_rows(v, k).tolist() == np.argsort(-v, axis=1, kind="stable")[:, :k].tolist()


def test_top_k_rows_over_a_whole_vocabulary():
    """Rows as wide as a vocabulary take top_k_rows' block pass: still a full stable argsort's
    picks, with ties (within a block, across blocks, at the k-th block maximum), masked ranges as
    the timestamp rules leave them, rows with fewer than k values above -inf, and the positions past
    the last whole block."""
    from whisperms.logprobs import TOP_K_BLOCK, top_k_rows

    rng = np.random.default_rng(1)
    n = 51865  # not a multiple of TOP_K_BLOCK: some positions lie past the last whole block
    n_blocks = n // TOP_K_BLOCK
    for trial in range(40):
        v = (rng.standard_normal((int(rng.integers(1, 41)), n)) * 3).astype(np.float32)
        if trial % 2:
            v = np.round(v)  # many equal values
        v[0, : n - 1501] = -np.inf  # text masked: only timestamps left
        v[-1, n - 1501 :] = -np.inf  # timestamps masked
        if len(v) > 2:
            v[1] = -np.inf
            v[1, [7, 7 + n_blocks, 9]] = 2.0  # three values above -inf, two in one block
        if len(v) > 3:
            v[2, [5, 5 + n_blocks, 6 + 2 * n_blocks]] = 100.0  # the top three tie, two in one block
            v[2, n - 1] = 100.0  # and one past the last whole block
        ranked = np.argsort(-v, axis=1, kind="stable")  # once: the suite's slowest pure test
        for k in (1, 2, 6, 11):
            assert top_k_rows(v, k).tolist() == ranked[:, :k].tolist()


def test_exp_sums_in_blocks_of_rows_equal_the_whole_array_pass():
    """The normaliser of beam search (float64 sums) and greedy selection (float32), taken a block of
    rows at a time: bit for bit the one pass over the whole array, in blocks that divide the rows
    evenly and not, with -inf (suppressed) tokens and a row of one value."""
    from whisperms.logprobs import EXP_SUM_BLOCK_BYTES, exp_sums

    rng = np.random.default_rng(2)
    n = 51865
    per_block = EXP_SUM_BLOCK_BYTES // (n * 4)
    assert 1 < per_block < 40  # 40 beam rows span several blocks
    for n_rows in (1, per_block, per_block + 1, 40):
        logits = (rng.standard_normal((n_rows, n)) * 4).astype(np.float32)
        logits[rng.random(logits.shape) < 0.3] = -np.inf
        logits[0] = -np.inf
        logits[0, 17] = 3.0
        peak = logits.max(axis=1)
        for dtype in (np.float64, np.float32):
            expected = np.exp(logits - peak[:, None]).sum(axis=1, dtype=dtype)
            sums = exp_sums(logits, peak, dtype)
            assert sums.dtype == dtype and sums.tobytes() == expected.tobytes()
        assert exp_sums(logits, peak, np.float64)[0] == 1.0


def _reference_update(beam, tokens, logits, sum_logprobs):
    """CTranslate2's beam step (BeamSearch::search in its src/decoding.cc) written out with loops,
    the vectorised update's reference: the 2 * beam_size best continuations of all beams, ranked;
    the first beam_size go on, except that one ending in EOT is registered as finished and its
    place taken by the next best that does not end. A sequence several rows hold (every row at the
    first step, where CTranslate2 expands the first beam only) proposes once."""
    # beam search's arithmetic: exp in float32, summed and the rest in float64
    peak = logits.max(axis=1, keepdims=True)
    total = np.exp(logits - peak).sum(axis=1, keepdims=True, dtype=np.float64)
    logprobs = (logits.astype(np.float64) - peak.astype(np.float64)) - np.log(total)
    proposer = {}  # each sequence in the order of its first row, proposed from its last
    for row in range(tokens.shape[0]):
        proposer[tuple(tokens[row].tolist())] = row
    candidates = []
    for prefix, row in proposer.items():
        for token in np.argsort(-logprobs[row], kind="stable")[: 2 * beam.beam_size].tolist():
            candidates.append((sum_logprobs[row] + logprobs[row, token], prefix + (token,), row))
    ranked = sorted(candidates, key=lambda c: -c[0])  # stable: ties keep the proposal order
    kept, source_rows, scores, spare = [], [], [], beam.beam_size
    for k in range(min(beam.beam_size, len(ranked))):
        candidate = ranked[k]
        if candidate[1][-1] == beam.eot:
            beam.finished[candidate[1]] = candidate[0]
            while spare < len(ranked) and ranked[spare][1][-1] == beam.eot:
                spare += 1
            if spare >= len(ranked):
                continue
            candidate, spare = ranked[spare], spare + 1
        scores.append(candidate[0])
        kept.append(candidate[1])
        source_rows.append(candidate[2])
    sum_logprobs[: len(scores)] = scores
    return np.array(kept, np.int64), source_rows, len(beam.finished) >= beam.max_candidates


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_update_equals_ctranslate2_bookkeeping(seed):
    """Random runs of beam search on a small vocabulary with many ties and frequent EOT: every
    step's next tokens, sources, scores, finished candidates and completion equal the dict-based
    reference."""
    rng = np.random.default_rng(seed)
    beam_size, vocab, eot = int(rng.integers(1, 6)), int(rng.integers(4, 12)), 3
    patience = [None, 0.5, 2.0][seed % 3]
    fast, slow = (BeamSearchDecoder(beam_size, eot, patience) for _ in range(2))
    tokens = np.array([[1, 2]] * beam_size, np.int64)
    sums_fast, sums_slow = np.zeros(beam_size), np.zeros(beam_size)
    for _ in range(8):
        # integers: many exact ties
        logits = rng.integers(-3, 3, (tokens.shape[0], vocab)).astype(np.float32)
        logits[rng.random(logits.shape) < 0.2] = -np.inf
        # rows holding equal sequences see equal logits
        logits[tokens[:, 1] == tokens[0, 1]] = logits[0]
        a = fast.update(tokens, logits, sums_fast)
        b = _reference_update(slow, tokens, logits, sums_slow)
        assert a[0].tolist() == b[0].tolist() and a[1] == b[1] and a[2] == b[2]
        np.testing.assert_array_equal(sums_fast, sums_slow)
        assert fast.finished == slow.finished and list(fast.finished) == list(slow.finished)
        if a[2] or len(a[0]) < beam_size:
            break
        tokens = a[0]
