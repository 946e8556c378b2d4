"""transcribe()'s options end to end on real audio, each against faster-whisper on the same weights
where it implements the same option, and each on an input where the option changes the outcome (so
an implementation that ignores it fails).

Inputs are dev clips, or built from them as each test's docstring says. Decoding is greedy at
temperature 0 unless a test is about sampling, so both engines are deterministic.
"""

import numpy as np
import pytest

from whisperms import OptionsError, WhispermsWarning
from whisperms.audio import (
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    load_audio,
    log_mel_spectrogram,
    pad_or_trim,
)
from whisperms.decoding import DecodingOptions, DecodingTask
from whisperms.token_selection import rank_score

from conftest import DATA, faster_whisper_model

faster_whisper = pytest.importorskip(
    "faster_whisper", reason="reference engine: pip install -e .[test]"
)

JFK = DATA / "jfk_inaugural_1961.flac"  # 11 s, one window
SHORT = DATA / "ljspeech_LJ001-0002.wav"  # 2 s
SONNET = DATA / "librivox_shakespeare-sonnet-001.mp3"  # 53 s: two windows
FRENCH = DATA / "picovoice_fr_test_fr.wav"


@pytest.fixture(scope="module")
def fw(tiny_en_ct2_dir):
    return faster_whisper_model(tiny_en_ct2_dir)


@pytest.fixture(scope="module")
def jfk():
    return load_audio(str(JFK))


@pytest.fixture(scope="module")
def sonnet():
    return load_audio(str(SONNET))


def ours(model, audio, **options):
    """(start, end, text) of each segment, greedy at temperature 0 unless the options say
    otherwise."""
    options = {"temperature": 0.0, **options}
    return [(s.start, s.end, s.text) for s in model.transcribe(audio, **options).segments]


def theirs(fw, audio, **options):
    options = {"temperature": 0.0, "beam_size": 1, "language": "en", "vad_filter": False, **options}
    segments, _ = fw.transcribe(audio, **options)
    return [(round(s.start, 3), round(s.end, 3), s.text) for s in segments]


# --- clip_timestamps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clips, first_word", [("3.5,8", "ask"), ([5.0], "What")])
def test_clip_timestamps(tiny_en_model, fw, jfk, clips, first_word):
    """Only the given range of JFK is transcribed ("3.5,8": the middle; [5.0]: from 5 s to the end),
    as faster-whisper does: the same segments, times and text, all inside the range, and not the
    words before it."""
    got = ours(tiny_en_model, jfk, clip_timestamps=clips)
    assert got == theirs(fw, jfk, clip_timestamps=clips)
    start, end = (3.5, 8.0) if clips == "3.5,8" else (5.0, 11.0)
    assert got and all(start <= s <= e <= end for s, e, _ in got), got
    assert got[0][2].split()[0] == first_word and "fellow Americans" not in "".join(
        t for _, _, t in got
    )


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_clip_ending_before_it_starts_is_skipped(tiny_en_model, fw, jfk, batch_size):
    """ "6,2,3.5,8": openai and faster-whisper skip the clip 6-2 and transcribe 3.5-8; whisperms
    refused the option. Now the same segments as faster-whisper's (the batched mode's: those of
    3.5-8 alone)."""
    got = ours(tiny_en_model, jfk, clip_timestamps="6,2,3.5,8", batch_size=batch_size)
    alone = ours(tiny_en_model, jfk, clip_timestamps="3.5,8", batch_size=batch_size)
    assert got and got == alone
    if batch_size is None:
        assert got == theirs(fw, jfk, clip_timestamps="6,2,3.5,8")


# --- initial_prompt, carry_initial_prompt, condition_on_previous_text
# ----------------------------------------------


def test_initial_prompt(tiny_en_model, fw, jfk):
    """A punctuated prompt makes the JFK transcript punctuated (unprompted it has no comma): as
    faster-whisper."""
    prompt = "And so, my fellow Americans, ask not."
    prompted = ours(tiny_en_model, jfk, initial_prompt=prompt)
    assert prompted == theirs(fw, jfk, initial_prompt=prompt)
    assert prompted[0][2].startswith(" And so, my fellow Americans, ask not")
    assert "," not in "".join(text for _, _, text in ours(tiny_en_model, jfk))
    # an empty prompt is a prompt too, " ", as openai and faster-whisper take it (it was none)
    empty = ours(tiny_en_model, jfk, initial_prompt="")
    assert empty == theirs(fw, jfk, initial_prompt="") != ours(tiny_en_model, jfk)


def test_initial_prompt_as_token_ids(tiny_en_model, fw, jfk):
    """faster-whisper takes initial_prompt as token ids too, put in as given: refused before.
    Here the ids of JFK's first words as tiny.en decodes them: the same segments as
    faster-whisper's, in both modes; ids the model does not have are one line."""
    from whisperms.batched import BatchedTranscriber

    ids = tiny_en_model.decode(window_mel_of(jfk)).tokens[:12]  # what JFK says, as a prompt
    prompted = ours(tiny_en_model, jfk, initial_prompt=ids)
    assert prompted == theirs(fw, jfk, initial_prompt=ids) != ours(tiny_en_model, jfk)
    batched = BatchedTranscriber(tiny_en_model, temperature=0.0, initial_prompt=tuple(ids))
    assert (
        batched.run(jfk).text
        == tiny_en_model.transcribe(
            jfk, temperature=0.0, initial_prompt=np.array(ids), batch_size=8
        ).text
    )
    for bad, message in (
        ([1, True], "initial_prompt must be token ids"),
        ({"a": 1}, "initial_prompt must be a string or token ids"),
        ([51864], "token id 51864 is beyond this model's vocabulary"),
    ):
        with pytest.raises(OptionsError, match=message):
            tiny_en_model.transcribe(jfk, initial_prompt=bad)


def window_mel_of(audio):
    return log_mel_spectrogram(pad_or_trim(audio))


@pytest.mark.parametrize("beam_size", [1, 5])
def test_prefix(tiny_en_model, fw, jfk, sonnet, beam_size):
    """A prefix opens the first window's text after <|0.00|> and is part of it, as in
    faster-whisper: the same segments, times and text, greedy and beam 5. openai's placement
    (straight after the start tokens, then a forced timestamp) gave one empty segment, or garbled
    text with beam 5. Only the first window gets it (not the sonnet's second)."""
    prefix = "And so, my fellow"
    got = ours(tiny_en_model, jfk, prefix=prefix, beam_size=beam_size)
    assert got == theirs(fw, jfk, prefix=prefix, beam_size=beam_size)
    assert got[0][2].startswith(" And so, my fellow Americans ask not")
    # words not spoken: CTranslate2 leaves the token after the prefix free, and tiny.en writes on
    # in one segment (openai's timestamp rule there forced a timestamp: " Hello world." became a
    # segment of its own, 0-1 s, and the speech started at 1 s)
    arctic = load_audio(str(DATA / "cmuarctic_aew_arctic_a0001.wav"))
    got = ours(tiny_en_model, arctic, prefix="Hello world.", beam_size=beam_size)
    assert got == theirs(fw, arctic, prefix="Hello world.", beam_size=beam_size)
    assert len(got) == 1 and got[0][2].lower().startswith(" hello world. author of the")
    if beam_size == 1:  # beam 5 differs from faster-whisper on the sonnet without a prefix too
        first = " Sonnet one"
        got = ours(tiny_en_model, sonnet, prefix=first)
        assert got == theirs(fw, sonnet, prefix=first)
        assert got[0][2].startswith(first) and got[-1][0] > 30
        assert "".join(text for _, _, text in got).count(first) == 1


def test_condition_on_previous_text_false(tiny_en_model, fw, sonnet):
    """Sonnet 1 (53 s, two windows): the second window decoded without the first one's text as its
    prompt gives other words than with it ('looking a famine' vs 'making a famine'), and
    faster-whisper's segments."""
    unconditioned = ours(tiny_en_model, sonnet, condition_on_previous_text=False)
    assert unconditioned == theirs(fw, sonnet, condition_on_previous_text=False)
    assert unconditioned != ours(tiny_en_model, sonnet)


def window_mel(model, audio, seek):
    """The mel of the 30-s window starting at mel frame `seek`, cut as transcribe() cuts it (zeros
    past the end)."""
    mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
    content = mel.shape[-1] - N_FRAMES
    return pad_or_trim(mel[:, seek : seek + min(N_FRAMES, content - seek)], N_FRAMES)


def window_tokens(model, audio, seek, **options):
    """Tokens that decode() gives for that window at temperature 0."""
    return model.decode(
        window_mel(model, audio, seek), language="en", temperature=0.0, **options
    ).tokens


def test_carry_initial_prompt(tiny_en_model, sonnet):
    """Sonnet 1 with an upper-case initial prompt and condition_on_previous_text=False: the first
    window is prompted either way; the second window gets the initial prompt again only with
    carry_initial_prompt (openai's option; faster-whisper has none), so it is decoded exactly as
    decode(prompt=initial prompt) decodes it (upper case), and without carrying exactly as decode()
    with no prompt decodes it."""
    prompt = "SONNET ONE, BY WILLIAM SHAKESPEARE."
    options = dict(temperature=0.0, condition_on_previous_text=False, initial_prompt=prompt)
    carried = tiny_en_model.transcribe(sonnet, carry_initial_prompt=True, **options)
    plain = tiny_en_model.transcribe(sonnet, carry_initial_prompt=False, **options)
    assert [s.tokens for s in carried.segments if s.seek == 0] == [
        s.tokens for s in plain.segments if s.seek == 0
    ]
    seek = next(s.seek for s in carried.segments if s.seek > 0)
    assert seek == next(s.seek for s in plain.segments if s.seek > 0)

    def second_window(result):
        return [t for s in result.segments if s.seek == seek for t in s.tokens]

    with_prompt = window_tokens(tiny_en_model, sonnet, seek, prompt=prompt)
    without = window_tokens(tiny_en_model, sonnet, seek)
    assert with_prompt != without
    got_carried, got_plain = second_window(carried), second_window(plain)
    assert got_carried and got_carried == with_prompt[: len(got_carried)]
    assert got_plain and got_plain == without[: len(got_plain)]
    second = [s.text for s in carried.segments if s.seek == seek][0]
    assert second.upper() == second and second.strip()  # the prompt's style carried over


# --- word timestamps' punctuation options
# ---------------------------------------------------------------------------


def test_punctuations_options(tiny_en_model, fw, jfk):
    """JFK with the punctuated prompt of test_initial_prompt: by default each comma is merged into
    the word before it ("so,"); with no punctuation to merge the commas are words of their own. Both
    as faster-whisper's words with the same options."""
    prompted = dict(word_timestamps=True, initial_prompt="And so, my fellow Americans, ask not.")

    def words(**options):
        ours = [
            w["word"]
            for s in tiny_en_model.transcribe(jfk, temperature=0.0, **prompted, **options).segments
            for w in s.words
        ]
        segments, _ = fw.transcribe(
            jfk,
            temperature=0.0,
            beam_size=1,
            language="en",
            vad_filter=False,
            **prompted,
            **options,
        )
        assert ours == [w.word for s in segments for w in s.words]
        return ours

    merged, apart = words(), words(prepend_punctuations="", append_punctuations="")
    assert " so," in merged and "," not in merged
    assert "," in apart and " so" in apart and " so," not in apart


# --- task="translate"
# ------------------------------------------------------------------------------------------


def test_translate(base_model, base_ct2_dir):
    """base on the French dev clip with task="translate": faster-whisper's English segments on the
    same weights, not the French transcript."""
    audio = load_audio(str(FRENCH))
    fw_base = faster_whisper_model(base_ct2_dir)
    translated = ours(base_model, audio, task="translate", language="fr")
    assert translated == theirs(fw_base, audio, task="translate", language="fr")
    text = "".join(t for _, _, t in translated)
    assert text.isascii() and " the " in text.lower()
    assert ours(base_model, audio, language="fr") != translated
    # openai's warning for word timestamps on a translation (one line before decoding)
    with pytest.warns(
        WhispermsWarning, match="^word timestamps on translations may not be reliable"
    ):
        base_model.transcribe(audio[:SAMPLE_RATE], task="translate", word_timestamps=True)


# --- the no-speech window skip
# --------------------------------------------------------------------------------------


def test_no_speech_window_is_skipped(tiny_en_model, fw):
    """JFK, 50 s of white noise (standard deviation 0.01, seeded), a 2-s clip: the window at 30 s
    holds only noise, its no-speech probability is above 0.6 and its text unlikely (below -1), so it
    is skipped whole, as faster-whisper skips it; with no_speech_threshold=None the same window
    yields a hallucinated segment."""
    noise = (np.random.default_rng(0).normal(size=50 * SAMPLE_RATE) * 0.01).astype(np.float32)
    audio = np.concatenate([load_audio(str(JFK)), noise, load_audio(str(SHORT))])
    skipped = tiny_en_model.transcribe(audio, temperature=0.0)
    assert [(s.start, s.end, s.text) for s in skipped.segments] == theirs(fw, audio)
    assert [s.seek for s in skipped.segments] == [0, 0, 6000]  # nothing from the window at 30 s
    assert "comparatively modern" in skipped.segments[-1].text
    kept = tiny_en_model.transcribe(audio, temperature=0.0, no_speech_threshold=None)
    hallucinated = [s for s in kept.segments if s.seek == 3000]
    assert (
        hallucinated and hallucinated[0].no_speech_prob > 0.6 and hallucinated[0].avg_logprob < -1.0
    )


# --- temperature fallback and sampling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thresholds", [dict(logprob_threshold=0.0), dict(compression_ratio_threshold=0.1)]
)
def test_fallback_when_a_threshold_fails(tiny_en_model, thresholds):
    """Thresholds no text can meet (an average log probability of 0; a gzip ratio of 0.1) make every
    attempt fail, so the window is decoded at each temperature of the schedule in turn, and the last
    temperature is reported; met thresholds keep the first (greedy) attempt."""
    audio = load_audio(str(SHORT))
    schedule = (0.0, 0.3, 0.6)
    failed = tiny_en_model.transcribe(audio, temperature=schedule, **thresholds)
    assert failed.segments and {s.temperature for s in failed.segments} == {0.6}
    kept = tiny_en_model.transcribe(audio, temperature=schedule)
    assert {s.temperature for s in kept.segments} == {0.0}
    assert kept.text.strip() == "in being comparatively modern."


@pytest.mark.parametrize("batch_size", [None, 4])
def test_when_every_temperature_fails_the_likeliest_attempt_is_kept(
    tiny_en_model, fw, jfk, batch_size
):
    """JFK with a compression ratio no text meets (0.5) and temperatures 0 and 1: whisperms kept
    the last attempt, openai's rule, a sample at temperature 1 ("So my fellow American Ask not...",
    a new one each run); faster-whisper keeps the attempt of best average log probability, here the
    beam search at 0, reporting the last temperature. Now so, in both modes."""
    options = dict(beam_size=5, compression_ratio_threshold=0.5, temperature=(0.0, 1.0))
    for _ in range(2):  # a sample kept would differ from run to run
        result = tiny_en_model.transcribe(jfk, batch_size=batch_size, **options)
        assert {s.temperature for s in result.segments} == {1.0}
        if batch_size is None:
            assert [(s.start, s.end, s.text) for s in result.segments] == theirs(fw, jfk, **options)
        else:  # the batched mode's piece (VAD) as alone at temperature 0
            alone = tiny_en_model.transcribe(jfk, batch_size=batch_size, beam_size=5, temperature=0)
            assert [s.text for s in result.segments] == [s.text for s in alone.segments]


def seeded(monkeypatch, seed):
    """numpy's default_rng() (what decoding draws its samples from) seeded, so sampling repeats
    exactly."""
    original = np.random.default_rng
    monkeypatch.setattr(
        np.random, "default_rng", lambda *args: original(seed) if not args else original(*args)
    )


def test_best_of_keeps_the_best_ranked_sample(tiny_en_model, jfk, monkeypatch):
    """transcribe(temperature=0.7, best_of=5) on JFK keeps, of the five samples it draws, the one
    with the best length-normalised log probability: the same five are drawn here one at a time from
    an identically seeded generator, ranked independently, and the winner must be what transcribe()
    returned (and differ from the first draw, which best_of=1 would have kept)."""
    seeded(monkeypatch, 2024)
    result = tiny_en_model.transcribe(jfk, temperature=0.7, best_of=5, language="en")
    assert {s.temperature for s in result.segments} == {0.7}
    features = tiny_en_model.inference.embed_audio(window_mel(tiny_en_model, jfk, 0)[None])
    one = DecodingTask(tiny_en_model, DecodingOptions(language="en", temperature=0.7))
    rng = np.random.default_rng(2024)
    samples = [one.run(features, "en", rng=rng) for _ in range(5)]
    scores = [rank_score(s.avg_logprob * (len(s.tokens) + 1), len(s.tokens), None) for s in samples]
    best = samples[int(np.argmax(scores))]
    assert len({tuple(s.tokens) for s in samples}) > 1 and best.tokens != samples[0].tokens
    got = [t for s in result.segments for t in s.tokens]
    assert got and got == best.tokens[: len(got)]


def test_openai_idioms_run(tiny_en_model, jfk):
    """What openai-whisper code writes runs as it does there: the audio helpers at the package's
    top level, fp16 given (False, the CPU idiom, quietly; True as a warning that the precision is
    the model's: openai warns on a CPU too), no_speech_threshold above 1 (no window skipped), and
    the dict idioms on the result (openai returns a dict)."""
    import warnings

    import whisperms

    mel = whisperms.log_mel_spectrogram(whisperms.pad_or_trim(whisperms.load_audio(jfk)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = tiny_en_model.transcribe(jfk, fp16=False, no_speech_threshold=2.0)
        window = tiny_en_model.decode(mel, DecodingOptions(fp16=False))
    assert "fellow Americans" in window.text and "fellow Americans" in result.text
    with pytest.warns(
        WhispermsWarning, match="^fp16=True has no effect: this model runs in float32"
    ):
        tiny_en_model.decode(mel, fp16=True)
    with pytest.raises(whisperms.OptionsError, match="^fp16 must be True, False or None"):
        tiny_en_model.transcribe(jfk, fp16="yes")
    assert result.get("language") == "en" and result.get("missing", 7) == 7
    assert "segments" in result and "words" not in result["segments"][0]
    assert list(dict(result)) == ["text", "segments", "language"]
    assert dict(result["segments"][0]) == {k: v for k, v in result.to_dict()["segments"][0].items()}
    assert [key for key, _ in result.items()] == list(result.keys())


# --- faster-whisper's repetition_penalty, no_repeat_ngram_size, hotwords, max_new_tokens
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, beam_size",
    [
        (dict(repetition_penalty=1.5), 1),
        (dict(repetition_penalty=1.5), 5),
        (dict(no_repeat_ngram_size=2), 1),
        (dict(no_repeat_ngram_size=2), 5),
        (dict(repetition_penalty=0.8), 1),  # below 1: a reward
    ],
    ids=["penalty-greedy", "penalty-beam5", "ngram-greedy", "ngram-beam5", "reward-greedy"],
)
def test_repetition_rules(tiny_en_model, fw, jfk, sonnet, rules, beam_size):
    """CTranslate2's repetition penalty and n-gram rule, as faster-whisper passes them: the same
    segments, times and text on JFK and on the sonnet's two windows (the second one prompted),
    greedy and beam 5, each changing the text somewhere."""
    changed = False
    for audio in (jfk, sonnet):
        got = ours(tiny_en_model, audio, beam_size=beam_size, **rules)
        assert got == theirs(fw, audio, beam_size=beam_size, **rules)
        changed |= got != ours(tiny_en_model, audio, beam_size=beam_size)
    assert changed


@pytest.mark.parametrize("beam_size", [1, 5])
def test_repetition_rules_read_the_prefix(tiny_en_model, fw, jfk, beam_size):
    """The prefix is part of the text the rules read (CTranslate2 forces it as decoded tokens):
    with no token allowed twice, none of the prefix's comes again."""
    prefix, rules = "And so, my fellow", dict(no_repeat_ngram_size=1, repetition_penalty=1.3)
    got = ours(tiny_en_model, jfk, prefix=prefix, beam_size=beam_size, **rules)
    assert got == theirs(fw, jfk, prefix=prefix, beam_size=beam_size, **rules)
    assert got[0][2].startswith(" And so, my fellow") and got[0][2].count(",") == 1


def test_hotwords(tiny_en_model, fw, jfk, sonnet):
    """Hotwords go after <|startofprev|>, before the prompt, in every window without a prefix, as
    faster-whisper's get_prompt puts them: the same transcripts, alone and with an initial prompt
    (the sonnet's second window has the first one's text too); a prefix drops them."""
    hot = "Kennedy inaugural"
    got = ours(tiny_en_model, jfk, hotwords=hot)
    assert got == theirs(fw, jfk, hotwords=hot) != ours(tiny_en_model, jfk)
    got = ours(tiny_en_model, sonnet, hotwords="Shakespeare", initial_prompt="Sonnet.")
    assert got == theirs(fw, sonnet, hotwords="Shakespeare", initial_prompt="Sonnet.")
    prefixed = ours(tiny_en_model, jfk, hotwords=hot, prefix="And so")
    assert prefixed == ours(tiny_en_model, jfk, prefix="And so")
    assert prefixed == theirs(fw, jfk, hotwords=hot, prefix="And so")


def test_max_new_tokens(tiny_en_model, fw, jfk, sonnet):
    """At most this many tokens sampled in a window, as faster-whisper documents it (openai's
    sample_len). faster-whisper passes CTranslate2 a max_length of the prompt's length plus it,
    which CTranslate2 halves: with tiny.en's one-token prompt K tokens come from 2K - 1 there, the
    same transcript. In the batched mode too."""
    got = ours(tiny_en_model, jfk, max_new_tokens=8)
    assert got == theirs(fw, jfk, max_new_tokens=15)
    assert (
        len(tiny_en_model.transcribe(jfk, temperature=0.0, max_new_tokens=8).segments[0].tokens)
        == 8
    )
    for kwargs in (dict(), dict(batch_size=2)):
        result = tiny_en_model.transcribe(sonnet, temperature=0.0, max_new_tokens=6, **kwargs)
        per_window = {}
        for segment in result.segments:
            per_window[segment.seek] = per_window.get(segment.seek, 0) + len(segment.tokens)
        assert len(per_window) >= 2 and max(per_window.values()) == 6, per_window
    with pytest.raises(OptionsError, match="^max_new_tokens and sample_len are one option"):
        tiny_en_model.transcribe(jfk, max_new_tokens=5, sample_len=5)
    with pytest.raises(OptionsError, match="^max_new_tokens must be an integer >= 1 or None"):
        tiny_en_model.transcribe(jfk, max_new_tokens=0)


def test_faster_whisper_names_for_openai_options(tiny_en_model, fw, jfk, sonnet, capfd):
    """faster-whisper's log_prob_threshold is openai's logprob_threshold, its
    prompt_reset_on_temperature the temperature above which the next window has no prompt
    (openai's fixed 0.5: below 0 every window's prompt is reset, the sonnet's second window then
    as with condition_on_previous_text=False, as in faster-whisper), its log_progress the bar."""
    from whisperms.transcribe_options import transcribe_options

    assert transcribe_options(log_prob_threshold=-0.3).logprob_threshold == -0.3
    assert transcribe_options(log_prob_threshold=None).logprob_threshold is None  # rule off
    with pytest.raises(OptionsError, match="^max_new_tokens and sample_len are one option"):
        transcribe_options(max_new_tokens=None, sample_len=5)
    with pytest.raises(OptionsError, match="^log_prob_threshold and logprob_threshold are one"):
        transcribe_options(log_prob_threshold=-0.3, logprob_threshold=-0.5)
    with pytest.raises(OptionsError, match="^log_prob_threshold must be a finite number or None"):
        transcribe_options(log_prob_threshold="low")
    reset = ours(tiny_en_model, sonnet, prompt_reset_on_temperature=-1.0)
    assert reset == theirs(fw, sonnet, prompt_reset_on_temperature=-1.0)
    assert reset == ours(tiny_en_model, sonnet, condition_on_previous_text=False)
    assert reset != ours(tiny_en_model, sonnet)
    capfd.readouterr()
    tiny_en_model.transcribe(jfk, log_progress=True)
    assert "11.0/11.0 s audio" in capfd.readouterr().err
    with pytest.raises(OptionsError, match="^log_progress must be True or False, got 'yes'"):
        tiny_en_model.transcribe(jfk, log_progress="yes")
