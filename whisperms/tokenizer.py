"""Whisper's tokenizer over a Hugging Face `tokenizer.json` (the `tokenizers` package, no tiktoken).

Names and semantics mirror openai/whisper `whisper/tokenizer.py`, so decoding and timing code can be
read side by side with openai's. Special-token ids are read from the file, never hard-coded:
English-only and multilingual vocabularies differ by one id, and files differ in token names
(`<|nospeech|>` vs `<|nocaptions|>`).
"""

import json
import os
import re
import stat
import string
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tokenizers

from .bpe_merges import restore_missing_merges
from .errors import CheckpointError, OptionsError, WhispermsError
from .lazy import InBackground

# <|endoftext|> in the English-only and in the multilingual vocabularies
ENGLISH_EOT, MULTILINGUAL_EOT = 50256, 50257
# how Whisper's control tokens are written: <|endoftext|>, <|en|>, <|0.00|>, ...
_CONTROL = re.compile(r"<\|[^|<>]+\|>")

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko":
    "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish",
    "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id":
    "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk":
    "ukrainian", "el": "greek", "ms": "malay", "cs": "czech", "ro": "romanian", "da": "danish",
    "hu": "hungarian", "ta": "tamil", "no": "norwegian", "th": "thai", "ur": "urdu", "hr":
    "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin", "mi": "maori", "ml":
    "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian", "lv": "latvian",
    "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et":
    "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy":
    "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq":
    "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si":
    "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu":
    "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht":
    "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa":
    "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg":
    "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

# language code lookup by name, with a few language aliases (openai's table)
TO_LANGUAGE_CODE = {
    **{language: code for code, language in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip
# codes Whisper spells otherwise: ISO 639-1's for Javanese is jv, Whisper's token <|jw|>
CODE_ALIASES = {"jv": "jw"}

TASKS = ("transcribe", "translate")
TIME_PRECISION = 0.02  # seconds per timestamp token (one encoder frame)
N_TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|>
# Languages written without spaces: word timestamps split them at character boundaries instead.
CHAR_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
# tiktoken and newer HF files call it <|nospeech|>; older HF tokenizer.json files (and
# CTranslate2's) <|nocaptions|>.
NO_SPEECH_NAMES = ("<|nospeech|>", "<|nocaptions|>")
# Older English-only HF files (e.g. whisper-tiny.en's) name Hebrew by its withdrawn ISO code.
LEGACY_LANGUAGE_NAMES = {"he": "iw"}
# Parsed tokenizer files kept (by path and version): a process rarely loads more than two models.
TOKENIZER_VERSIONS = 8


def _byte_of_char():
    """GPT-2's reversible byte -> printable-char map, inverted: byte-level BPE vocab strings back to
    raw bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    # control/space bytes move to chr(256), chr(257), ...
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + n): b for n, b in enumerate(others)}}


def _byte_translation():
    """_byte_of_char as a str.translate table to latin-1 chars (one per byte); chars outside the
    byte-level alphabet go to one latin-1 cannot encode."""
    byte_of = _byte_of_char()
    outside = {c: "\uffff" for c in range(256) if chr(c) not in byte_of}
    return {**outside, **{ord(c): chr(b) for c, b in byte_of.items()}}


def _load(path: str) -> Tuple[tokenizers.Tokenizer, Tuple[Optional[bytes], ...]]:
    """The tokenizer.json at `path` parsed, once per version of the file: a folder converted again
    in place (another model's tokenizer) is read again by the next load_model."""
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"tokenizer file not found: {path}")
    return _parse(path, (info.st_mtime_ns, info.st_size, info.st_ino))


@lru_cache(maxsize=TOKENIZER_VERSIONS)
def _parse(path: str, version) -> Tuple[tokenizers.Tokenizer, Tuple[Optional[bytes], ...]]:
    """Parse a tokenizer.json (`version` keys the cache); also build id -> bytes so decode can
    apply tiktoken's byte rules."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        hf = tokenizers.Tokenizer.from_str(text)
    except Exception as error:  # the parser's own: a file cut short, not a tokenizer
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: not a valid tokenizer file: {reason}") from None
    hf = _with_all_merges(text, hf)
    # Text is text: "<|endoftext|>" typed in a prompt must not become a control token (tiktoken
    # refuses it).
    hf.encode_special_tokens = True
    # each vocab string's chars turned into latin-1 chars of their bytes, then encoded, in C
    alphabet = _byte_translation()
    try:
        id_bytes = {
            i: tok.translate(alphabet).encode("latin-1")
            for tok, i in hf.get_vocab(with_added_tokens=False).items()
        }
    except UnicodeEncodeError:
        raise CheckpointError(f"{path}: a vocabulary entry is not byte-level BPE") from None
    # Added tokens are stored as literal text, not in the byte-level alphabet.
    id_bytes.update(
        {i: tok.content.encode("utf-8") for i, tok in hf.get_added_tokens_decoder().items()}
    )
    table = [None] * (max(id_bytes) + 1)
    for i, b in id_bytes.items():
        table[i] = b
    return hf, tuple(table)


def _with_all_merges(text: str, hf: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    """`hf` (parsed from `text`), or the same file with the merges it lacks restored
    (bpe_merges.py) and every <|...|> token marked special: Hugging Face's files list the
    timestamps <|0.00|>..<|30.00|> as added tokens that are not, and encode_special_tokens leaves
    those to be matched in text, so a prompt holding "<|0.00|>" became a timestamp token (tiktoken
    reads it as text)."""
    data = json.loads(text)
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        return hf
    added = [t for t in data.get("added_tokens") or [] if isinstance(t, dict)]
    special = {t.get("content") for t in added}
    changed = restore_missing_merges(model, special)
    for token in added:
        content = token.get("content")
        if isinstance(content, str) and _CONTROL.fullmatch(content) and not token.get("special"):
            token["special"] = changed = True
    if not changed:
        return hf
    return tokenizers.Tokenizer.from_str(json.dumps(data))


# tokenizer files being parsed on a thread of their own (prefetch), by resolved path
_prefetched: Dict[str, InBackground] = {}


def check_tokenizer_file(
    tokenizer_json_path, multilingual: Optional[bool] = None, n_vocab: Optional[int] = None
) -> None:
    """A CheckpointError unless the file parses as a tokenizer and, when `multilingual` is given,
    is the vocabulary of such weights, and when `n_vocab` is, of weights of that many tokens
    (load_model and convert check before the file is used)."""
    _checked(str(Path(tokenizer_json_path).resolve()), multilingual, n_vocab)


def _checked(path: str, multilingual: Optional[bool], n_vocab: Optional[int] = None):
    """`_load(path)`, after its prefetch if one was begun; with `multilingual`, an error for a
    tokenizer of the other vocabulary; with `n_vocab`, for one laid out for another number of
    languages."""
    job = _prefetched.pop(path, None)
    if job is not None:
        try:
            job.get()
        except WhispermsError:  # raised again, here, by the call below
            pass
    hf, id_bytes = _load(path)
    # the one id where the two vocabularies differ: a tokenizer of the other kind decoded the
    # model's tokens into other words, with no error
    expected = MULTILINGUAL_EOT if multilingual else ENGLISH_EOT
    if multilingual is not None and hf.token_to_id("<|endoftext|>") != expected:
        kind, other = ("multilingual", "English-only")[:: 1 if multilingual else -1]
        raise CheckpointError(
            f"{path}: a tokenizer for {other} models, but the weights are {kind}: copy "
            "tokenizer.json from the same model's folder or Hugging Face repository"
        )
    no_timestamps = hf.token_to_id("<|notimestamps|>")
    if n_vocab is not None and no_timestamps is not None:
        # the timestamps end the vocabulary, after the language tokens: a file of large-v3's 100
        # languages beside 99 languages' weights (or the reverse) has its special ids one off, and
        # a v2 model was fed <|startoflm|> for its task and <|0.00|> for "no timestamps"
        size = no_timestamps + 1 + N_TIMESTAMP_TOKENS
        if size != n_vocab:
            languages = sum(hf.token_to_id(f"<|{code}|>") is not None for code in LANGUAGES)
            raise CheckpointError(
                f"{path}: a vocabulary of {size} tokens ({languages} languages), but the weights "
                f"have {n_vocab}: a tokenizer.json of another model (large-v3's has 100 "
                "languages, earlier ones 99); copy tokenizer.json from the same model's folder or "
                "Hugging Face repository"
            )
    return hf, id_bytes


def prefetch(tokenizer_json_path) -> None:
    """Begin parsing a tokenizer file on a thread of its own (the `tokenizers` parser releases the
    GIL): load_model does, and the first transcription needs it only after its first window."""
    path = str(Path(tokenizer_json_path).resolve())
    if path not in _prefetched:
        _prefetched[path] = InBackground(lambda: _load(path))


def check_task(task):
    """The one check of a task name, for the decoding options and the tokenizer: an OptionsError
    unless in TASKS."""
    if task not in TASKS:
        raise OptionsError(f"unknown task {task!r}: use {' or '.join(map(repr, TASKS))}")


@dataclass
class Tokenizer:
    """Whisper's vocabulary: byte-level BPE text tokens, then special tokens, then 1501 timestamp
    tokens."""

    hf: tokenizers.Tokenizer = field(repr=False)
    # raw bytes of each id the file defines
    id_bytes: Tuple[Optional[bytes], ...] = field(repr=False)
    num_languages: int = 99
    language: Optional[str] = None
    task: Optional[str] = None
    sot_sequence: Tuple[int, ...] = ()

    def __post_init__(self):
        sot_sequence = [self.sot]
        if self.language is not None:
            sot_sequence.append(self.to_language_token(self.language))
        if self.task is not None:
            sot_sequence.append(self.transcribe if self.task == "transcribe" else self.translate)
        self.sot_sequence = tuple(sot_sequence)
        # Timestamps are implicit (no_timestamps + 1 + i); a file that lists them must agree.
        listed = self.hf.token_to_id("<|0.00|>")
        if listed is not None and listed != self.timestamp_begin:
            raise CheckpointError(
                f"<|0.00|> has id {listed}, expected {self.timestamp_begin} (<|notimestamps|> + 1)"
            )

    def _special(self, *names: str) -> int:
        for name in names:
            token_id = self.hf.token_to_id(name)
            if token_id is not None:
                return token_id
        raise CheckpointError(
            f"tokenizer.json has no {' or '.join(names)} token: not a Whisper tokenizer"
        )

    def encode(self, text: str) -> List[int]:
        """Text tokens only: no sot/eot template (the file's post-processor would add them)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: List[int]) -> str:
        """Text of the tokens, timestamps dropped; other special tokens appear as their text, like
        tiktoken."""
        return self._decode([t for t in token_ids if t < self.timestamp_begin])

    def decode_with_timestamps(self, token_ids: List[int]) -> str:
        """Like decode, but timestamp tokens are rendered as e.g. "<|1.08|>"."""
        return self._decode(token_ids)

    def _decode(self, token_ids: List[int]) -> str:
        # All bytes first, then one UTF-8 decode: a character split across tokens comes out whole,
        # and a sequence cut mid-character ends in U+FFFD (errors="replace"), exactly as tiktoken
        # and openai do.
        return b"".join(self._token_bytes(t) for t in token_ids).decode("utf-8", errors="replace")

    def _token_bytes(self, token_id: int) -> bytes:
        if self.timestamp_begin <= token_id < self.timestamp_begin + N_TIMESTAMP_TOKENS:
            # the file need not list timestamps: render them ourselves
            return f"<|{(token_id - self.timestamp_begin) * TIME_PRECISION:.2f}|>".encode()
        if 0 <= token_id < len(self.id_bytes) and self.id_bytes[token_id] is not None:
            return self.id_bytes[token_id]
        raise KeyError(f"token id {token_id} is not in this tokenizer")

    @cached_property
    def eot(self) -> int:
        return self._special("<|endoftext|>")

    @cached_property
    def transcribe(self) -> int:
        return self._special("<|transcribe|>")

    @cached_property
    def translate(self) -> int:
        return self._special("<|translate|>")

    @cached_property
    def sot(self) -> int:
        return self._special("<|startoftranscript|>")

    @cached_property
    def sot_lm(self) -> int:
        return self._special("<|startoflm|>")

    @cached_property
    def sot_prev(self) -> int:
        return self._special("<|startofprev|>")

    @cached_property
    def no_speech(self) -> int:
        return self._special(*NO_SPEECH_NAMES)

    @cached_property
    def no_timestamps(self) -> int:
        return self._special("<|notimestamps|>")

    @cached_property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @cached_property
    def language_token(self) -> int:
        """The token of the `language` field."""
        if self.language is None:
            raise ValueError("This tokenizer does not have language token configured")
        return self.to_language_token(self.language)

    def to_language_token(self, language: str) -> int:
        codes = self.all_language_codes
        if language not in codes:
            raise OptionsError(
                f"language {language!r} is not among this model's {len(codes)} languages"
            )
        return self.all_language_tokens[codes.index(language)]

    @cached_property
    def all_language_tokens(self) -> Tuple[int, ...]:
        """Ids of the first `num_languages` languages of LANGUAGES (large-v3 added `yue`: 100,
        others 99)."""
        codes = self.all_language_codes
        return tuple(
            self._special(f"<|{c}|>", f"<|{LEGACY_LANGUAGE_NAMES.get(c, c)}|>") for c in codes
        )

    @cached_property
    def all_language_codes(self) -> Tuple[str, ...]:
        return tuple(LANGUAGES)[: self.num_languages]

    @cached_property
    def sot_sequence_including_notimestamps(self) -> Tuple[int, ...]:
        return tuple(list(self.sot_sequence) + [self.no_timestamps])

    @cached_property
    def non_speech_tokens(self) -> Tuple[int, ...]:
        """Tokens to suppress so the model writes no speaker tags or non-speech annotations that
        are not spoken (♪♪♪, ( SPEAKING FOREIGN LANGUAGE ), [DAVID] Hey there,), keeping basic
        punctuation. openai's algorithm, unchanged, so suppression matches openai token for token.
        """
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()

        # Symbols that may be one token or several depending on the vocabulary. If several, suppress
        # the first: they are U+2640..U+267F miscellaneous symbols whose 3-byte UTF-8 forms share
        # their first two bytes.
        miscellaneous = set("♩♪♫♬♭♮♯")
        assert all(0x2640 <= ord(c) <= 0x267F for c in miscellaneous)

        # allow hyphens "-" and single quotes "'" between words, but not at the beginning of a word
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in [self.encode(symbol), self.encode(" " + symbol)]:
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))

    def split_to_word_tokens(self, tokens: List[int]) -> Tuple[List[str], List[List[int]]]:
        """Words and their tokens, for word timestamps."""
        if self.language in CHAR_LANGUAGES:
            # Without spaces, words cannot be found without morpheme analysis: split wherever the
            # tokens decode to whole unicode characters instead.
            return self.split_tokens_on_unicode(tokens)
        return self.split_tokens_on_spaces(tokens)

    def split_tokens_on_unicode(self, tokens: List[int]) -> Tuple[List[str], List[List[int]]]:
        decoded_full = self.decode_with_timestamps(tokens)
        replacement_char = "\ufffd"

        words, word_tokens, current_tokens = [], [], []
        unicode_offset = 0
        for token in tokens:
            current_tokens.append(token)
            decoded = self.decode_with_timestamps(current_tokens)
            # A U+FFFD is a cut character unless the full text has one at the same place (a genuine
            # one).
            index = decoded.find(replacement_char)
            if index < 0 or (
                unicode_offset + index < len(decoded_full)
                and decoded_full[unicode_offset + index] == replacement_char
            ):
                words.append(decoded)
                word_tokens.append(current_tokens)
                current_tokens = []
                unicode_offset += len(decoded)
        return words, word_tokens

    def split_tokens_on_spaces(self, tokens: List[int]) -> Tuple[List[str], List[List[int]]]:
        subwords, subword_tokens_list = self.split_tokens_on_unicode(tokens)
        words, word_tokens = [], []
        for subword, subword_tokens in zip(subwords, subword_tokens_list):
            special = subword_tokens[0] >= self.eot
            with_space = subword.startswith(" ")
            punctuation = subword.strip() in string.punctuation
            if special or with_space or punctuation or len(words) == 0:
                words.append(subword)
                word_tokens.append(subword_tokens)
            else:
                words[-1] = words[-1] + subword
                word_tokens[-1].extend(subword_tokens)
        return words, word_tokens


# whisper.cpp's and WhisperX's word for "detect the language" (openai-whisper's None)
AUTO_LANGUAGE = "auto"


def detect_requested(language) -> bool:
    return isinstance(language, str) and language.strip().lower() == AUTO_LANGUAGE


def language_code(language: str) -> str:
    """A language code from a code or a name/alias, any case ("de", "German", "castilian"; "jv",
    ISO 639-1's Javanese, is Whisper's "jw")."""
    key = language.strip().lower()
    key = CODE_ALIASES.get(key, key)
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise OptionsError(
        f"unknown language {language!r}: use a code or name from whisperms.tokenizer.LANGUAGES, "
        "e.g. 'de' or 'German'"
    )


def get_tokenizer(
    tokenizer_json_path,
    *,
    multilingual: bool,
    num_languages: int = 99,
    language: Optional[str] = None,
    task: Optional[str] = None,  # "transcribe", "translate" or None
) -> Tokenizer:
    """openai's get_tokenizer over a tokenizer.json. English-only models take no language or task
    tokens."""
    if language is not None:
        language = language_code(language)
    if task is not None:
        check_task(task)
    if not 1 <= num_languages <= len(LANGUAGES):
        raise OptionsError(
            f"num_languages must be between 1 and {len(LANGUAGES)}, got {num_languages}"
        )
    if multilingual:
        language = language or "en"
        task = task or "transcribe"
    else:
        language = None
        task = None
    hf, id_bytes = _checked(str(Path(tokenizer_json_path).resolve()), multilingual)
    return Tokenizer(
        hf=hf, id_bytes=id_bytes, num_languages=num_languages, language=language, task=task
    )
