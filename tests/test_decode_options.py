"""decode() through the model (one 30-s window) with each of DecodingOptions' fields, against
CTranslate2's generate on the same weights, mel, initial tokens and suppression list (as test_parity
does for the defaults), each on a clip where the option changes the tokens, so that a decode()
ignoring it fails."""

import pytest

from whisperms.decoding import DecodingOptions, DecodingTask

from conftest import DATA, window_mel

ctranslate2 = pytest.importorskip("ctranslate2", reason="reference engine: pip install -e .[test]")

JFK = "jfk_inaugural_1961.flac"
# English-only tiny.en on Spanish: many competing candidates
SPANISH = "mls_es_13697_11991_000000.opus"
MAX_INITIAL_TIMESTAMP_INDEX = 50  # openai's default max_initial_timestamp=1.0 s at 0.02 s per token


@pytest.fixture(scope="module")
def ct2_tiny_en(tiny_en_ct2_dir):
    return ctranslate2.models.Whisper(str(tiny_en_ct2_dir), device="cpu", compute_type="float32")


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
