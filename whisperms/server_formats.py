"""The server's answers in OpenAI's response formats: subtitles (srt, vtt) and verbose_json."""

import io
from typing import List

from .timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from .tokenizer import LANGUAGES


def subtitles(result, response_format: str) -> str:
    from .writers import WriteSRT, WriteVTT

    writer = (WriteSRT if response_format == "srt" else WriteVTT)(output_dir=".")
    out = io.StringIO()
    writer.write_result(result.to_dict(), file=out)
    return out.getvalue()


def verbose_json(result, task: str, granularities: List[str]) -> dict:
    """OpenAI's verbose_json: the language by name, the duration, and the granularities asked for:
    segments unless words alone are (as OpenAI's API answers), words if asked for."""
    words = "word" in granularities
    body = {
        "task": task,
        "language": _language(result, task),
        "duration": result.info.duration,
        **json_answer(result, task),
    }
    if "segment" in granularities or not words:
        body["segments"] = []
        for s in result.segments:
            d = s.to_dict()
            d.pop("words", None)
            body["segments"].append(d)
    if words:
        body["words"] = [
            {"word": word, "start": w["start"], "end": w["end"]}
            for s in result.segments
            for w in (s.words or [])
            if (word := api_word(w["word"]))
        ]
    return body


def json_answer(result, task: str) -> dict:
    """OpenAI's json answer: the text, stripped, and for a transcription the usage of a model
    billed by audio duration, the input's seconds (OpenAI's translations say no usage)."""
    body = {"text": result.text.strip()}
    if task == "transcribe":
        body["usage"] = {"type": "duration", "seconds": result.info.duration}
    return body


def _language(result, task: str) -> str:
    """The language by name; a translation's is its text's, always English (OpenAI's)."""
    if task == "translate":
        return "english"
    return LANGUAGES.get(result.language, result.language)


def api_word(word: str) -> str:
    """A word as OpenAI's API gives it: no space before it and no punctuation around it (' trail,'
    is 'trail'); Whisper's words carry both. Punctuation alone is no word."""
    return word.strip().strip(PREPEND_PUNCTUATIONS + APPEND_PUNCTUATIONS).strip()
