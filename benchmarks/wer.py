"""Word error rate as Whisper's paper scores it: jiwer over openai's text normalisers (the
whisper-normalizer package).

One home for the tests and the benchmarks (tests put this folder on sys.path). English goes through
EnglishTextNormalizer, other languages through BasicTextNormalizer; languages written without spaces
are scored per character. Test extra only: the whisperms package never imports jiwer.
"""

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

# no spaces between words: score characters
CHAR_LEVEL_LANGUAGES = {"ja", "zh", "th", "lo", "my", "km", "yue"}

_ENGLISH = EnglishTextNormalizer()
_BASIC = BasicTextNormalizer()
_LETTERS = BasicTextNormalizer(split_letters=True)


def normalize(text: str, language: str = "en") -> str:
    """`text` as Whisper's evaluation compares it: lowercase, no punctuation, English spellings and
    numbers standardised; for CHAR_LEVEL_LANGUAGES one character per word."""
    if language == "en":
        return _ENGLISH(text)
    return (_LETTERS if language in CHAR_LEVEL_LANGUAGES else _BASIC)(text)


def wer(references, hypotheses, languages=None) -> float:
    """Corpus WER: word edits summed over the pairs / reference words. A string is one pair;
    `languages` (one code, or one per pair; default English) picks each pair's normaliser."""
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    if isinstance(languages, str):
        languages = [languages] * len(references)
    languages = languages or ["en"] * len(references)
    return jiwer.wer(
        [normalize(r, lang) for r, lang in zip(references, languages)],
        [normalize(h, lang) for h, lang in zip(hypotheses, languages)],
    )
