"""The `whisperms` command: openai-whisper's options and defaults, plus `convert` and `models`
subcommands.

Every user-facing problem ends as one line on stderr: exit 2 for usage (bad option values or
combinations), exit 1 for runtime failures (a missing, unreadable or undecodable file, an unwritable
output folder, a bad checkpoint); other files in a batch still run. Warnings are one line too
("whisperms: warning: ...").
"""

import argparse
import math
import os
import signal
import sys
import warnings

from .errors import (
    AudioError,
    OptionsError,
    OutputError,
    Terminated,
    WhispermsError,
    WhispermsWarning,
    raise_terminated,
)
from .output_files import check_output_folder, check_targets, distinct_outputs

OUTPUT_FORMATS = ("txt", "vtt", "srt", "tsv", "json", "all")
# The most fallback temperatures --temperature_increment_on_fallback may make (an increment of
# 0.001 from 0): a tinier one made millions, built and checked before any file was read.
MAX_TEMPERATURES = 1001
EXIT_RUNTIME, EXIT_USAGE = 1, 2


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


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, like every other whisperms error (exit 2); --help is
    unchanged."""

    def error(self, message):
        print(f"whisperms: error: {message} (see {self.prog} --help)", file=sys.stderr)
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
    p.add_argument("audio", nargs="+", help="audio file(s) to transcribe")
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
    p.add_argument("--language", default=None, help="language code or name (default: detect)")
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
        help="with word timestamps and no --max_line_width: words per subtitle line",
    )
    p.add_argument(
        "--clip_timestamps",
        default="0",
        help="start,end,start,end,... seconds of the clips to transcribe; the last end defaults to "
        "the end",
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


def _temperatures(args):
    """openai's CLI: the first temperature, then steps of the increment up to 1.0 (just the first
    without one)."""
    from .transcribe import check_number

    first = check_number("--temperature", args.temperature, low=0)
    increment = check_number(
        "--temperature_increment_on_fallback",
        args.temperature_increment_on_fallback,
        low=0,
        strict_low=True,
        optional=True,
    )
    if increment is None:
        return (first,)
    # as many as np.arange(first, 1.0 + 1e-6, increment) holds: never past 1.0
    steps = math.ceil((1.0 + 1e-6 - first) / increment) if first < 1.0 else 1
    if steps > MAX_TEMPERATURES:
        raise OptionsError(
            f"--temperature_increment_on_fallback {increment:g} makes {steps} temperatures to try "
            f"from {first:g} to 1.0, more than {MAX_TEMPERATURES}: give a larger increment"
        )
    return tuple(round(first + i * increment, 6) for i in range(steps))


WORD_OPTIONS = ("highlight_words", "max_line_count", "max_line_width", "max_words_per_line")


def _writer_args(args):
    """The subtitle layout options, checked: openai's CLI refuses each without --word_timestamps (an
    option given a value that means "unset", False or 0, is not refused, as there) and warns of
    those another makes useless; the line limits are counts, so >= 1."""
    writer_args = {name: getattr(args, name) for name in WORD_OPTIONS}
    for name in ("max_line_count", "max_line_width", "max_words_per_line"):
        if writer_args[name] is not None and writer_args[name] < 0:
            raise OptionsError(f"--{name} must be 0 (no limit) or more, got {writer_args[name]}")
        writer_args[name] = writer_args[name] or None  # 0 is "unset", as openai's writers read it
    if not args.word_timestamps:
        for name in WORD_OPTIONS:
            if writer_args[name]:
                raise OptionsError(f"--{name} requires --word_timestamps True")
    # warnings, as openai's CLI gives them
    if writer_args["max_line_count"] and not writer_args["max_line_width"]:
        warnings.warn("--max_line_count has no effect without --max_line_width", WhispermsWarning)
    if writer_args["max_words_per_line"] and writer_args["max_line_width"]:
        warnings.warn("--max_words_per_line has no effect with --max_line_width", WhispermsWarning)
    return writer_args


def _transcribe_options(args):
    """Every transcription option checked (transcribe.transcribe_options), without the model or
    MindSpore."""
    from .transcribe import transcribe_options

    if args.threads < 0:
        raise OptionsError(
            f"--threads must be 0 (all cores) or a positive number of cores, got {args.threads}"
        )
    if (
        args.model_dir is not None
        and os.path.exists(args.model_dir)
        and not os.path.isdir(args.model_dir)
    ):
        raise OptionsError(f"--model_dir {args.model_dir} is not a folder")
    temperatures = _temperatures(args)
    decode = dict(
        task=args.task,
        language=args.language,
        best_of=args.best_of,
        beam_size=args.beam_size,
        patience=args.patience,
        length_penalty=args.length_penalty,
        suppress_tokens=args.suppress_tokens,
        fp16=args.fp16,
    )
    return transcribe_options(
        temperature=temperatures,
        compression_ratio_threshold=args.compression_ratio_threshold,
        logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold,
        condition_on_previous_text=args.condition_on_previous_text,
        initial_prompt=args.initial_prompt,
        carry_initial_prompt=args.carry_initial_prompt,
        word_timestamps=args.word_timestamps,
        prepend_punctuations=args.prepend_punctuations,
        append_punctuations=args.append_punctuations,
        clip_timestamps=args.clip_timestamps,
        hallucination_silence_threshold=args.hallucination_silence_threshold,
        vad_filter=args.vad_filter,
        vad_parameters=args.vad_parameters,
        batch_size=args.batch_size,
        **decode,
    )


def _as_cli_option(message, parser):
    """Keywords of transcribe_options' messages ("best_of must be ...") as --best_of: the first
    word, and later ones with an underscore (plain words such as "language" stay)."""
    names = {action.dest for action in parser._actions if action.option_strings}
    words = message.split(" ")
    cli = [
        f"--{w}" if w.rstrip(":,.)") in names and (i == 0 or "_" in w) else w
        for i, w in enumerate(words)
    ]
    return " ".join(cli)


def _transcribe_main(argv):
    """The options, every input file and the output folder are checked before MindSpore is imported
    and the model loaded, so a typo costs no start-up; only what needs the model (the device, the
    model name, an English-only model given another language) is checked after loading it."""
    from .audio import check_audio_file

    parser = transcribe_parser()
    args = parser.parse_args(argv)
    try:
        writer_args = _writer_args(args)
        options = _transcribe_options(args)
    except OptionsError as error:
        return _usage(_as_cli_option(str(error), parser))
    status, paths = 0, []
    for path in args.audio:
        try:
            paths.append(check_audio_file(path))
        except AudioError as error:
            status = _fail(str(error))
    try:
        check_output_folder(args.output_dir)
    except OutputError as error:
        return _fail(str(error))
    paths, clashes = distinct_outputs(paths)
    for message in clashes:
        status = _fail(message)
    if not paths:
        return status

    from . import load_model
    from .transcribe import Transcriber
    from .writers import get_writer

    try:
        model = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            download_root=args.model_dir,
            attn_implementation=args.attn_implementation,
            threads=args.threads or None,
        )
    except OptionsError as error:
        return _usage(str(error))
    except WhispermsError as error:
        return _fail(str(error))
    if args.verbose:
        rt = model.runtime
        print(
            f"whisperms: {model.name or args.model} on {rt.device}, {rt.dtype}, attention "
            f"{rt.attn_implementation}, "
            f"conv {rt.conv}, cores {rt.threads or 'all'}",
            file=sys.stderr,
        )
    writer = get_writer(args.output_format, args.output_dir)
    if options.batched:
        return _transcribe_batched(model, paths, options, args, writer, writer_args) or status
    for path in paths:
        try:
            check_targets(args.output_format, args.output_dir, path)
            transcriber = Transcriber(
                model,
                path,
                verbose=args.verbose,
                progress=show_progress(args.verbose),
                options=options,
            )
            result = transcriber.run()
            _write(writer, result, path, args.output_dir, writer_args)
        except OptionsError as error:  # what needs the model: the same for every file
            return _usage(str(error))
        except WhispermsError as error:
            status = _fail(_about(path, error))
        except OSError as error:  # writing: the folder checked above can still change, or fill up
            status = _fail(_unwritable(path, args.output_dir, error))
    return status


def _transcribe_batched(model, paths, options, args, writer, writer_args):
    """--batch_size: every file's windows share the batches; each file is written when its last
    window is done. Returns the exit status."""
    from .batched import BatchedTranscriber

    status, ready = 0, []
    for path in paths:
        try:
            check_targets(args.output_format, args.output_dir, path)
            ready.append(path)
        except OutputError as error:
            status = _fail(_about(path, error))
    try:
        transcriber = BatchedTranscriber(
            model, verbose=args.verbose, progress=show_progress(args.verbose), options=options
        )
    except OptionsError as error:  # what needs the model
        return _usage(str(error))
    for index, result in transcriber.results(ready):
        path = ready[index]
        if isinstance(result, WhispermsError):
            status = _fail(_about(path, result))
            continue
        try:
            _write(writer, result, path, args.output_dir, writer_args)
        except OSError as error:
            status = _fail(_unwritable(path, args.output_dir, error))
    return status


def _write(writer, result, path, output_dir, writer_args):
    os.makedirs(output_dir, exist_ok=True)
    writer(result.to_dict(), path, **writer_args)


def _about(path, error):
    return f"{path}: {error}" if path not in str(error) else str(error)


def _unwritable(path, output_dir, error):
    return f"{path}: cannot write its transcript to {output_dir}: {error.strerror or error}"


def _convert_main(argv):
    p = Parser(
        prog="whisperms convert",
        description="Convert a Hugging Face or CTranslate2 Whisper folder to whisperms.",
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    from .convert import convert

    try:
        out = convert(args.src, args.dst, dtype=args.dtype, overwrite=args.overwrite)
    except WhispermsError as error:
        return _fail(str(error))
    print(out)
    return 0


def _models_main(argv):
    parser = Parser(prog="whisperms models", description="Known model names and local copies.")
    parser.parse_args(argv)
    from .hub import ALIASES, RELEASED_DIMENSIONS, weights_root

    root = weights_root()
    for name in RELEASED_DIMENSIONS:
        local = root / name / "model.safetensors"
        size = f"{local.stat().st_size / 1e6:.0f} MB at {local.parent}" if local.is_file() else ""
        print(f"{name:16s} {size or 'not downloaded'}")
    for alias, name in ALIASES.items():
        print(f"{alias:16s} -> {name}")
    return 0


def _usage(message):
    print(f"whisperms: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _fail(message):
    print(f"whisperms: error: {message}", file=sys.stderr)
    return EXIT_RUNTIME


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr; one not from whisperms says its category."""
    text = str(message).splitlines()[0] if str(message) else category.__name__
    ours = issubclass(category, WhispermsWarning) or text.startswith("whisperms: ")
    text = text.removeprefix("whisperms: ")
    tag = "" if ours else f" ({category.__name__})"
    print(f"whisperms: warning: {text}{tag}", file=sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    commands = {"convert": _convert_main, "models": _models_main}
    saved = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: the signal is not this call's to handle
        previous = None
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        return _transcribe_main(argv)
    except BrokenPipeError:  # `whisperms models | head -1`: a reader that has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return _stopped("interrupted", 128 + signal.SIGINT)  # as a shell reports it
    except Terminated:  # also Ctrl-C during a MindSpore graph run: MindSpore makes it SIGTERM
        return _stopped("terminated", 128 + signal.SIGTERM)
    finally:
        warnings.showwarning = saved
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stopped(how: str, status: int) -> int:
    """One line, then the status. A file being written is gone by now (its writer removes it).
    Once MindSpore is imported the process ends here: an import it did not finish leaves exit hooks
    that crash the interpreter's shutdown, with pages of tracebacks."""
    print(f"whisperms: {how}", file=sys.stderr)
    # a failed import takes "mindspore" itself out of sys.modules, not what it had loaded
    if not any(name.partition(".")[0] == "mindspore" for name in list(sys.modules)):
        return status
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
