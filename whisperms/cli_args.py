"""The `whisperms` command's arguments: openai-whisper's options and defaults (each shown in
--help), parsed with every usage error as one line."""

import argparse
import sys

OUTPUT_FORMATS = ("txt", "vtt", "srt", "tsv", "json", "all")
EXIT_USAGE = 2


def str2bool(value):
    lowered = str(value).lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


def optional(kind):
    def parse(value):
        return None if value == "None" else kind(value)

    parse.__name__ = kind.__name__  # argparse names the type in its error: "invalid int value: 'x'"
    return parse


class DefaultsShown(argparse.HelpFormatter):
    """--help gives each option's default, as openai's CLI does, unless the option has none (None)
    or its text already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is argparse.SUPPRESS
        if unset or not action.option_strings or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, like every other whisperms error (exit 2), and the
    defaults in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)

    def error(self, message):
        # "whisperms" for the command and its subcommands, "whisperms-server" for that one
        command = self.prog.split()[0]
        print(f"{command}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def show_progress(verbose: bool, stream=None) -> bool:
    """Whether the CLI shows the progress bar: with --verbose True and stderr (or `stream`) a
    terminal, so never in a pipe, a log file or a test's subprocess.

    `--verbose True` (the default) prints the runtime, each segment as it is decoded (stdout) and
    this bar over seconds of audio (stderr); `--verbose False` prints nothing but errors. openai's
    CLI differs in one point: it shows its bar only with `--verbose False`, instead of the segment
    lines."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(verbose) and callable(isatty) and bool(isatty())


def transcribe_parser():
    from .timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS  # neither imports MindSpore
    from .tokenizer import TASKS

    p = Parser(
        prog="whisperms",
        description="Transcribe audio with Whisper on MindSpore.",
        epilog="Also: 'whisperms convert SRC DST' and 'whisperms models'.",
    )
    p.add_argument("audio", nargs="+", help="audio file(s) to transcribe; - reads standard input")
    # the names live in hub.py, which imports MindSpore: not listed here
    p.add_argument(
        "--model",
        default="tiny.en",
        help="model name ('whisperms models' lists them) or checkpoint folder",
    )
    p.add_argument(
        "--model_dir",
        default=None,
        help="where named models are looked up and cached (default: $WHISPERMS_WEIGHTS, else the "
        "repository's weights/, else ~/.cache/whisperms)",
    )
    p.add_argument(
        "--device", default=None, help="CPU or Ascend (default: Ascend when MindSpore reports one)"
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16"],
        help="weights and activations (default: float16 on Ascend, float32 on CPU)",
    )
    p.add_argument("--fp16", type=str2bool, default=None, help="openai's; --dtype decides")
    p.add_argument(
        "--attn_implementation",
        default="auto",
        choices=["auto", "eager", "flash_attention_2"],
        help="attention kernel (auto: flash_attention_2 on Ascend, eager elsewhere)",
    )
    p.add_argument("--output_dir", "-o", default=".", help="folder for the transcripts")
    p.add_argument(
        "--output_format",
        "-f",
        default="all",
        choices=OUTPUT_FORMATS,
        help="transcript format; all: one file of each",
    )
    p.add_argument(
        "--verbose",
        type=str2bool,
        default=True,
        help="True: print the runtime, each segment as it is decoded and, when stderr is a "
        "terminal, a "
        "progress bar over seconds of audio; False: print nothing but errors",
    )
    p.add_argument(
        "--task", default="transcribe", choices=TASKS, help="transcribe, or translate into English"
    )
    p.add_argument(
        "--language", default=None, help="language code or name; auto: detect (the default)"
    )
    p.add_argument(
        "--temperature", type=float, default=0, help="sampling temperature of the first attempt"
    )
    p.add_argument(
        "--best_of", type=optional(int), default=5, help="candidates sampled when temperature > 0"
    )
    p.add_argument(
        "--beam_size",
        type=optional(int),
        default=5,
        help="beams of beam search at temperature 0 (None: greedy)",
    )
    p.add_argument("--patience", type=float, default=None, help="beam search patience (None: 1.0)")
    p.add_argument(
        "--length_penalty",
        type=float,
        default=None,
        help="length penalty alpha for ranking (None: divide by the length)",
    )
    p.add_argument(
        "--suppress_tokens",
        default="-1",
        help="comma-separated token ids never to emit; -1: most symbols and special tokens",
    )
    p.add_argument(
        "--repetition_penalty",
        type=float,
        default=1.0,
        help="above 1: penalise the tokens already in a window's text (faster-whisper's)",
    )
    p.add_argument(
        "--no_repeat_ngram_size",
        type=int,
        default=0,
        help="never repeat an n-gram of this many tokens in a window's text; 0: off "
        "(faster-whisper's)",
    )
    p.add_argument(
        "--max_new_tokens",
        type=optional(int),
        default=None,
        help="tokens sampled per window at most (faster-whisper's; default: half the context)",
    )
    p.add_argument(
        "--hotwords",
        default=None,
        help="words or phrases to expect, given to every window before its prompt; not with a "
        "prefix (faster-whisper's)",
    )
    p.add_argument(
        "--initial_prompt", default=None, help="text given as the prompt of the first window"
    )
    p.add_argument(
        "--carry_initial_prompt",
        type=str2bool,
        default=False,
        help="prepend the initial prompt to every window's prompt",
    )
    p.add_argument(
        "--condition_on_previous_text",
        type=str2bool,
        default=True,
        help="prompt each window with the text before it",
    )
    p.add_argument(
        "--temperature_increment_on_fallback",
        type=optional(float),
        default=0.2,
        help="step up the temperature by this when a window fails the thresholds (None: no "
        "fallback)",
    )
    p.add_argument(
        "--compression_ratio_threshold",
        type=optional(float),
        default=2.4,
        help="gzip compression ratio above which a window's text counts as failed (repetitive)",
    )
    p.add_argument(
        "--logprob_threshold",
        type=optional(float),
        default=-1.0,
        help="average log probability below which a window's text counts as failed",
    )
    p.add_argument(
        "--no_speech_threshold",
        type=optional(float),
        default=0.6,
        help="no-speech probability above which a failed window counts as silence",
    )
    p.add_argument(
        "--word_timestamps", type=str2bool, default=False, help="add word-level timestamps"
    )
    p.add_argument(
        "--prepend_punctuations",
        default=PREPEND_PUNCTUATIONS,
        help="with word timestamps: symbols merged into the next word",
    )
    p.add_argument(
        "--append_punctuations",
        default=APPEND_PUNCTUATIONS,
        help="with word timestamps: symbols merged into the previous word",
    )
    p.add_argument(
        "--highlight_words",
        type=str2bool,
        default=False,
        help="with word timestamps: underline each word as it is spoken in srt and vtt",
    )
    p.add_argument(
        "--max_line_width",
        type=optional(int),
        default=None,
        help="with word timestamps: characters per subtitle line before a line break",
    )
    p.add_argument(
        "--max_line_count",
        type=optional(int),
        default=None,
        help="with --max_line_width: lines per subtitle",
    )
    p.add_argument(
        "--max_words_per_line",
        type=optional(int),
        default=None,
        help="with word timestamps: words per subtitle, unless --max_line_width and "
        "--max_line_count are given",
    )
    p.add_argument(
        "--clip_timestamps",
        default="0",
        help="start,end,start,end,... seconds of the clips to transcribe; a last end left out is "
        "the file's end",
    )
    p.add_argument(
        "--hallucination_silence_threshold",
        type=optional(float),
        default=None,
        help="with word timestamps: skip silences longer than this (s) around a likely "
        "hallucination",
    )
    p.add_argument(
        "--vad_filter",
        type=str2bool,
        default=None,
        help="transcribe only the speech found by the Silero VAD, with times on the file's "
        "timeline (faster-whisper's option; ignored with --clip_timestamps); default: on with "
        "--batch_size, off without",
    )
    p.add_argument(
        "--vad_parameters",
        default=None,
        help="VAD options as JSON or name=value,... (threshold, neg_threshold, "
        "min_speech_duration_ms, "
        "max_speech_duration_s, min_silence_duration_ms, speech_pad_ms)",
    )
    p.add_argument(
        "--batch_size",
        type=optional(int),
        default=None,
        help="the batched mode: decode this many windows together, speech cut by the VAD into "
        "pieces of up to 30 s, no text carried between pieces (faster-whisper's "
        "BatchedInferencePipeline); the files given share the batches",
    )
    p.add_argument(
        "--threads", type=int, default=0, help="CPU cores to use (default 0: all of them)"
    )
    return p
