"""decode() through the model (one 30-s window) with each of DecodingOptions' fields, against
CTranslate2's generate on the same weights, mel, initial tokens and suppression list (as test_parity
does for the defaults), each on a clip where the option changes the tokens, so that a decode()
ignoring it fails."""

import numpy as np
import pytest

from whisperms.decoding import DecodingOptions, DecodingTask

from conftest import DATA, ctranslate2_whisper, window_mel

ctranslate2 = pytest.importorskip("ctranslate2", reason="reference engine: pip install -e .[test]")

JFK = "jfk_inaugural_1961.flac"
# English-only tiny.en on Spanish: many competing candidates
SPANISH = "mls_es_13697_11991_000000.opus"
MAX_INITIAL_TIMESTAMP_INDEX = 50  # openai's default max_initial_timestamp=1.0 s at 0.02 s per token


@pytest.fixture(scope="module")
def ct2_tiny_en(tiny_en_ct2_dir):
    return ctranslate2_whisper(tiny_en_ct2_dir)


def ct2_tokens(ct2_model, model, mel, **options):
    """CTranslate2's tokens for the same initial tokens (prompt, prefix, <|notimestamps|>) and
    suppression list. CTranslate2's length_penalty a divides a candidate's score by length ** a: its
    0 ranks by the sum of log probabilities, as openai's length_penalty=0 does (and its default 1 as
    openai's None)."""
    task = DecodingTask(model, DecodingOptions(language="en", **options))
    length_penalty = options.get("length_penalty")
    result = ct2_model.generate(
        ctranslate2.StorageView.from_array(mel[None]),
        [list(task.initial_tokens)],
        beam_size=options.get("beam_size") or 1,
        patience=options.get("patience") or 1,
        length_penalty=1 if length_penalty is None else length_penalty,
        suppress_blank=True,
        suppress_tokens=list(task.suppress_tokens()),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        max_length=task.sample_len,
    )[0]
    return result.sequences_ids[0]


def tokenizer(model):
    return DecodingTask(model, DecodingOptions(language="en")).tokenizer


@pytest.mark.parametrize(
    "clip, options, without",
    [
        (JFK, dict(without_timestamps=True), dict()),
        (JFK, dict(prompt="AND SO, MY FELLOW AMERICANS"), dict()),
        (JFK, dict(beam_size=5, length_penalty=0.0), dict(beam_size=5)),
        # 1499: " country" (test_suppress_tokens checks the id)
        (JFK, dict(suppress_tokens="-1,1499"), dict()),
    ],
)
def test_option_matches_ctranslate2_and_changes_the_tokens(
    tiny_en_model, ct2_tiny_en, clip, options, without
):
    mel = window_mel(DATA / clip)
    ours = tiny_en_model.decode(mel, language="en", **options)
    assert ours.tokens == ct2_tokens(ct2_tiny_en, tiny_en_model, mel, **options)
    assert ours.tokens != tiny_en_model.decode(mel, language="en", **without).tokens


def test_without_timestamps_has_no_timestamp(tiny_en_model):
    result = tiny_en_model.decode(window_mel(DATA / JFK), without_timestamps=True)
    assert max(result.tokens) < tokenizer(tiny_en_model).timestamp_begin
    assert result.text == (
        "And so my fellow Americans ask not what your country can do for you, ask what you can do "
        "for your country."
    )


def test_prompt_sets_the_style(tiny_en_model):
    text = tiny_en_model.decode(window_mel(DATA / JFK), prompt="AND SO, MY FELLOW AMERICANS").text
    assert text == text.upper() and "ASK NOT WHAT YOUR COUNTRY" in text


def test_suppress_tokens(tiny_en_model):
    """A suppressed id is never emitted: JFK's ' country' (1499) comes out as ' Country'."""
    (country,) = tokenizer(tiny_en_model).encode(" country")
    assert country == 1499
    default = tiny_en_model.decode(window_mel(DATA / JFK))
    suppressed = tiny_en_model.decode(window_mel(DATA / JFK), suppress_tokens=f"-1,{country}")
    assert country in default.tokens and country not in suppressed.tokens
    assert suppressed.text.count(" Country") == 2


def test_prefix_without_timestamps(tiny_en_model, ct2_tiny_en):
    """The prefix is forced and the tokens after it are returned (openai keeps the prefix out of the
    result; CTranslate2 returns it in front): JFK with the prefix "And so, my fellow" continues
    "Americans ask not..."."""
    mel = window_mel(DATA / JFK)
    options = dict(without_timestamps=True, prefix="And so, my fellow")
    ours = tiny_en_model.decode(mel, language="en", **options)
    prefix = tokenizer(tiny_en_model).encode(" And so, my fellow")
    theirs = ct2_tokens(ct2_tiny_en, tiny_en_model, mel, **options)
    assert theirs[: len(prefix)] == prefix and ours.tokens == theirs[len(prefix) :]
    assert ours.text.startswith("Americans ask not what your country can do for you")


def test_prefix_with_timestamps(tiny_en_model, ct2_tiny_en):
    """With timestamps the prefix goes after <|0.00|>, as CTranslate2 and faster-whisper put it,
    and the tokens after it are CTranslate2's; openai's placement forced a timestamp after the
    prefix, and tiny.en then ended the window with nothing. In a batch with a window without a
    prefix, each row is what it is alone."""
    mel = window_mel(DATA / JFK)
    other = window_mel(DATA / "ljspeech_LJ001-0001.wav")
    options = DecodingOptions(language="en", prefix="And so, my fellow")
    task = DecodingTask(tiny_en_model, options)
    assert task.prefix_tokens[0] == task.tokenizer.timestamp_begin and task.opened
    ours = tiny_en_model.decode(mel, options)
    theirs = ct2_tokens(ct2_tiny_en, tiny_en_model, mel, prefix="And so, my fellow")
    n = len(task.prefix_tokens)
    assert theirs[:n] == list(task.prefix_tokens) and ours.tokens == theirs[n:]
    assert ours.text.startswith("Americans ask not what your country can do for you")
    batch = tiny_en_model.decode(np.stack([mel, other]), [options, DecodingOptions(language="en")])
    assert [r.tokens for r in batch] == [ours.tokens, tiny_en_model.decode(other).tokens]
    for beams in (dict(beam_size=5),):
        alone = tiny_en_model.decode(mel, options, **beams)
        rows = tiny_en_model.decode(
            np.stack([other, mel]), [DecodingOptions(language="en"), options], **beams
        )
        assert rows[1].tokens == alone.tokens and rows[1].text.startswith("Americans")


def test_patience_waits_for_more_finished_candidates(tiny_en_model):
    """Beam 2 on the Spanish clip (tiny.en): with patience 3 the search goes on until 6 candidates
    have finished, a superset of the 2 that patience 1 stops at, so it keeps a different,
    better-ranked candidate (CTranslate2 counts finished candidates otherwise, so it is no reference
    here)."""
    mel = window_mel(DATA / SPANISH)
    plain = tiny_en_model.decode(mel, language="en", beam_size=2)
    patient = tiny_en_model.decode(mel, language="en", beam_size=2, patience=3.0)

    # rank_score with length_penalty None: sum of log probabilities (EOT included) over length
    def score(result):
        return result.avg_logprob * (len(result.tokens) + 1) / len(result.tokens)

    assert patient.tokens != plain.tokens and score(patient) > score(plain)


def test_decode_checks_its_options_and_the_model_stays_usable(tiny_en_model, monkeypatch):
    """decode() takes DecodingOptions as given: each of these failed deep inside (a TypeError, a
    MindSpore traceback), or decoded wrongly (a negative id picked a token from the vocabulary's
    end); a prompt id beyond the vocabulary made MindSpore's Gather fail and every later call on
    the model fail with it. Now each is one OptionsError before any graph runs, the encoder's
    included."""
    from whisperms import OptionsError

    mel = window_mel(DATA / "ljspeech_LJ001-0001.wav")
    before = tiny_en_model.decode(mel).tokens
    encoded = []
    embed_audio = tiny_en_model.inference.embed_audio
    monkeypatch.setattr(
        tiny_en_model.inference, "embed_audio", lambda m: encoded.append(m) or embed_audio(m)
    )
    n_vocab = tiny_en_model.dims.n_vocab
    cases = [
        (dict(prompt=[n_vocab]), f"prompt: token id {n_vocab} is beyond this model's vocabulary"),
        (dict(prefix=[10**9]), "prefix: token id 1000000000 is beyond this model's vocabulary"),
        (dict(suppress_tokens=[10**9]), "suppress_tokens: token id 1000000000 is beyond"),
        # NaN probabilities in the sampler's fallback, and a ValueError, after pages of warnings
        (
            dict(suppress_tokens=list(range(n_vocab))),
            f"suppress_tokens: all {n_vocab} tokens suppressed: none is left",
        ),
        (dict(prompt=[-3]), "prompt must be token ids (integers >= 0), got [-3]"),
        (dict(suppress_tokens=[-2]), "suppress_tokens must be token ids (integers >= 0 or -1)"),
        (dict(suppress_tokens="-1,abc"), "suppress_tokens must be comma-separated token ids"),
        (dict(beam_size=2.5), "beam_size must be a whole number, got 2.5"),
        (dict(sample_len="9"), "sample_len must be a whole number, got '9'"),
        (dict(max_initial_timestamp=-1.0), "max_initial_timestamp must be >= 0 seconds"),
        (dict(patience=float("nan"), beam_size=2), "patience must be a finite number, got nan"),
        (dict(without_timestamps="no"), "without_timestamps must be True or False, got 'no'"),
        (dict(language=5), "language must be a string, got 5"),
        (dict(prefix=[262] * 450), "the prompt and prefix make 452 tokens, more than the model's"),
    ]
    for options, message in cases:
        with pytest.raises(OptionsError) as info:
            tiny_en_model.decode(mel, **options)
        assert str(info.value).startswith(message), options
        with pytest.raises(OptionsError):  # the same in a batch
            tiny_en_model.decode([mel, mel], **options)
    with pytest.raises(OptionsError, match="^mel must be an array of numbers"):
        tiny_en_model.decode("hello")
    assert encoded == []
    assert tiny_en_model.decode(mel).tokens == before and len(encoded) == 1


def test_decode_checks_rows_to_be_detected_before_the_encoder(base_model, monkeypatch):
    """On a multilingual model given no language, and for rows that may not share a batch, the
    options are refused before the encoder runs too."""
    from whisperms import DecodingOptions, OptionsError

    mel = window_mel(DATA / "picovoice_fr_test_fr.wav")
    encoded = []
    embed_audio = base_model.inference.embed_audio
    monkeypatch.setattr(
        base_model.inference, "embed_audio", lambda m: encoded.append(m) or embed_audio(m)
    )
    n_vocab = base_model.dims.n_vocab
    with pytest.raises(OptionsError, match=f"^prompt: token id {n_vocab} is beyond"):
        base_model.decode(mel, prompt=[n_vocab])
    with pytest.raises(OptionsError, match="^the prompt and prefix make 454 tokens"):
        base_model.decode(np.stack([mel, mel]), prefix=[262] * 450)
    with pytest.raises(OptionsError, match="may differ only in language, prompt and prefix"):
        base_model.decode(np.stack([mel, mel]), [DecodingOptions(), DecodingOptions(beam_size=2)])
    assert encoded == []


def test_detect_language_of_a_batch(base_model):
    """openai's detect_language takes (B, n_mels, 3000) and answers per window (it failed inside
    MindSpore, and left the step graph unfused for the model's life)."""
    mels = [window_mel(DATA / n) for n in ("picovoice_fr_test_fr.wav", "ljspeech_LJ001-0001.wav")]
    codes, probs = base_model.detect_language(np.stack(mels))
    assert codes == ["fr", "en"]
    for mel, code, row in zip(mels, codes, probs):
        alone_code, alone = base_model.detect_language(mel)
        assert alone_code == code and row == pytest.approx(alone, abs=1e-6)


def test_load_model_needs_a_name_or_a_folder():
    from whisperms import OptionsError, load_model

    for value in (None, 5, ""):
        with pytest.raises(OptionsError) as info:
            load_model(value)
        assert str(info.value) == (
            f"load_model needs a model name or a checkpoint folder, got {value!r}"
        )


def test_a_forked_child_gets_an_error_not_a_hang(tiny_en_model, tiny_en_ct2_dir):
    """A model used and then forked (multiprocessing's default start method on Linux): the
    child's first graph call waited for ever on MindSpore threads the child does not have, with the
    parent's model and with one the child loads itself (which the ForkedProcess message advised)."""
    import os
    import time

    from whisperms import load_model

    audio = DATA / "ljspeech_LJ001-0002.wav"
    tiny_en_model.transcribe(str(audio))
    for own in (False, True):
        pid = os.fork()
        if pid == 0:  # the child: exit status says what happened, nothing else runs
            status = 3
            try:
                (load_model(tiny_en_ct2_dir) if own else tiny_en_model).transcribe(str(audio))
                status = 2
            except Exception as error:
                said = ("ran MindSpore graphs" if own else "was loaded in") in str(error)
                status = 0 if type(error).__name__ == "ForkedProcess" and said else 1
            finally:
                os._exit(status)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0, own
    assert tiny_en_model.transcribe(str(audio)).text.strip() == "in being comparatively modern."


def test_token_ids_as_numpy_arrays(tiny_en_model):
    """prompt, prefix and suppress_tokens as numpy arrays (passed the option check, then failed in
    a truth test with numpy's 'truth value of an array is ambiguous'): as the same lists."""
    mel = window_mel(DATA / JFK)
    from whisperms.decoding import build_tokenizer

    tokenizer = build_tokenizer(tiny_en_model)
    lists = dict(
        prompt=tokenizer.encode(" AND SO, MY FELLOW AMERICANS"),
        prefix=tokenizer.encode(" And so"),
        suppress_tokens=[-1, *tokenizer.encode(" country")],
    )
    arrays = {name: np.array(ids) for name, ids in lists.items()}
    assert tiny_en_model.decode(mel, **arrays).tokens == tiny_en_model.decode(mel, **lists).tokens


def test_a_window_that_runs_into_the_context_ends_where_ctranslate2s_does(
    tiny_en_model, ct2_tiny_en
):
    """openai stops once a row is longer than the context (its last position is still fed), and
    CTranslate2 with it: whisperms stopped a token earlier, so a window decoded to the context
    (end of text suppressed; a long prompt and a long text) lost its last token."""
    mel = window_mel(DATA / JFK)
    n_ctx = tiny_en_model.dims.n_text_ctx
    # a full prompt (n_ctx // 2 - 1 tokens) and the default sample_len: CTranslate2 decodes it
    # whole (it generates at most n_ctx // 2 tokens)
    options = dict(prompt=list(range(1000, 1223)), suppress_tokens="-1,50256")
    task = DecodingTask(tiny_en_model, DecodingOptions(language="en", **options))
    tokens = tiny_en_model.decode(mel, **options).tokens
    assert len(task.initial_tokens) + len(tokens) == n_ctx + 1
    reference = ct2_tiny_en.generate(
        ctranslate2.StorageView.from_array(mel[None]),
        [list(task.initial_tokens)],
        beam_size=1,
        suppress_blank=True,
        suppress_tokens=list(task.suppress_tokens()),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        max_length=n_ctx,  # as faster-whisper asks: its prompt counts towards it
    )[0]
    assert tokens == reference.sequences_ids[0]
    # no prompt and a sample_len past the context: openai's bound alone
    tokens = tiny_en_model.decode(
        mel, without_timestamps=True, suppress_tokens="-1,50256", sample_len=1000
    ).tokens
    assert 2 + len(tokens) == n_ctx + 1  # <|startoftranscript|><|notimestamps|>


def test_beam_size_means_beam_search_at_any_temperature(tiny_en_model):
    """openai's DecodingTask picks beam search whenever beam_size is given, whatever the
    temperature (reported, not used): whisperms sampled instead, a different text each call."""
    mel = window_mel(DATA / JFK)
    beam = tiny_en_model.decode(mel, beam_size=5)
    for _ in range(2):
        warm = tiny_en_model.decode(mel, beam_size=5, temperature=0.7)
        assert warm.tokens == beam.tokens and warm.temperature == 0.7
    two = tiny_en_model.decode(np.stack([mel, mel]), beam_size=5, temperature=0.7)
    assert [r.tokens for r in two] == [beam.tokens] * 2


def test_decode_takes_openais_arguments_and_refuses_others_in_one_line(tiny_en_model):
    """decode(language='fr') on an English-only model was refused (openai's decode and whisperms'
    transcribe take it, as English); an unknown keyword (faster-whisper's max_new_tokens) was a
    TypeError traceback; the result had no audio_features, which openai's has."""
    from whisperms import decode
    from whisperms.errors import OptionsError, WhispermsWarning

    mel = window_mel(DATA / JFK)
    plain = tiny_en_model.decode(mel)
    with pytest.warns(WhispermsWarning, match="English-only; language 'fr' is ignored") as said:
        french = tiny_en_model.decode(mel, language="fr")
    assert french.tokens == plain.tokens and french.language == "en"
    with pytest.warns(WhispermsWarning, match="English-only") as direct:
        decode(tiny_en_model, mel, language="fr")
    # told at the caller's line through either entry point (a fixed stacklevel named whisperms'
    # loading.py for one and this file's caller for the other)
    assert [w.filename for w in said] == [w.filename for w in direct] == [__file__]
    for name, hint in (("max_new_tokens", " .openai's name: sample_len"), ("foo", "$")):
        with pytest.raises(OptionsError, match=f"^unknown decoding option '{name}'{hint}"):
            tiny_en_model.decode(mel, **{name: 5})
    features = tiny_en_model.inference.embed_audio(mel[None]).asnumpy()[0]
    assert plain.audio_features.shape == features.shape == (1500, 384)
    np.testing.assert_allclose(plain.audio_features.asnumpy(), features, atol=1e-5)
    rows = tiny_en_model.decode(np.stack([window_mel(DATA / SPANISH), mel]))
    np.testing.assert_allclose(rows[1].audio_features.asnumpy(), features, atol=1e-5)
