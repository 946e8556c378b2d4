"""Speech probabilities of a whole file: windows cut as faster-whisper cuts them, run through
compiled graphs.

Both graphs have static shapes, so a process compiles each once, again only after a run that ran out
of memory (Compiled; their layout: the comment on WINDOWS_PER_CALL).
"""

import threading
from functools import lru_cache, partial

import mindspore as ms
import numpy as np
from mindspore import Tensor

from .. import compute_thread
from ..errors import CheckpointError, memory_error
from ..state_assign import assign_state
from .model import CONTEXT_SAMPLES, HIDDEN, INPUT_SAMPLES, WINDOW_SAMPLES, SileroVAD
from .weights import DEFAULT_WEIGHTS, read_weights

# Where MindSpore has a fused LSTM kernel (FUSED_LSTM_DEVICES), one graph takes WINDOWS_PER_CALL
# windows and the state before them, runs the encoder on all of them at once and the recurrence over
# them in one kernel, and returns their probabilities and the state after them; the last call is
# padded with silent windows (their outputs are dropped; the state after them is never used).
# Elsewhere (Ascend) the encoder graph takes WINDOWS_PER_CALL windows and a second graph unrolls
# STEPS_PER_CALL LSTM steps, so the recurrence costs one call per STEPS_PER_CALL windows.
WINDOWS_PER_CALL = 1024
STEPS_PER_CALL = 32
FUSED_LSTM_DEVICES = ("CPU", "GPU")  # where MindSpore's LSTM kernel exists


def n_windows(n_samples: int) -> int:
    """Windows faster-whisper runs for `n_samples` samples: it pads to the next multiple of
    WINDOW_SAMPLES, and with a full window of zeros when the length already is one."""
    return n_samples // WINDOW_SAMPLES + 1


def padded_range(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples start .. stop - 1 of `audio` as faster-whisper pads it, without a padded copy of
    the whole (an hour of audio is 230 MB): zeros to n_windows * WINDOW_SAMPLES samples, the last
    CONTEXT_SAMPLES of them zeroed even where they are audio. faster-whisper clears the last
    window's context in place, and that context is a view of the audio, so the last window sees
    zeros there; this does the same, so that the probabilities are."""
    out = np.zeros(stop - start, np.float32)
    real = audio[start : min(stop, len(audio))]
    out[: len(real)] = real
    cleared = max(n_windows(len(audio)) * WINDOW_SAMPLES - CONTEXT_SAMPLES, start)
    out[cleared - start :] = 0.0
    return out


def windows_at(audio: np.ndarray, first: int, count: int) -> np.ndarray:
    """(count, INPUT_SAMPLES) model inputs of windows first .. first + count - 1 of `audio` as
    `padded_range` pads it: window i is the last CONTEXT_SAMPLES samples of window i - 1 (zeros
    for the first) then its own WINDOW_SAMPLES samples. Rows past the last window are zeros."""
    windows = np.zeros((count, INPUT_SAMPLES), np.float32)
    end = min(first + count, n_windows(len(audio)))
    if end <= first:
        return windows
    begin = max(first * WINDOW_SAMPLES - CONTEXT_SAMPLES, 0)
    span = padded_range(audio, begin, end * WINDOW_SAMPLES)
    rows = span[first * WINDOW_SAMPLES - begin :].reshape(-1, WINDOW_SAMPLES)
    windows[: len(rows), CONTEXT_SAMPLES:] = rows
    windows[1 : len(rows), :CONTEXT_SAMPLES] = rows[:-1, -CONTEXT_SAMPLES:]
    if first > 0:
        windows[0, :CONTEXT_SAMPLES] = span[:CONTEXT_SAMPLES]
    return windows


def silero_windows(audio: np.ndarray) -> np.ndarray:
    """All (n_windows, INPUT_SAMPLES) model inputs of `audio`, as faster-whisper builds them."""
    return windows_at(audio, 0, n_windows(len(audio)))


class Compiled:
    """`fn` compiled by `mindspore.jit`, each call through compute_thread.run_graph; compiled again
    after a run that ran out of memory, as MindSpore fails every later call of that jit at the same
    shapes with another error: a server's VAD, loaded once per process, would refuse every later
    request. The new jit is made where the failed call ran (on CPU the graph thread, before it takes
    the next call: another thread's call queued meanwhile runs the new one)."""

    def __init__(self, fn, on_graph_thread: bool):
        self.fn = fn
        self.on_graph_thread = on_graph_thread
        self.jit = ms.jit(fn)

    def __call__(self, *args):
        return compute_thread.run_graph(self._run, *args, on_graph_thread=self.on_graph_thread)

    def _run(self, *args):
        compiled = self.jit
        try:
            return compiled(*args)
        except RuntimeError as error:
            # MindSpore's own error here (run_graph says it as a RuntimeMemoryError); a concurrent
            # failure of the same jit (devices whose calls run on the callers' threads) makes one
            if memory_error(error) is not None and self.jit is compiled:
                self.jit = ms.jit(self.fn)
            raise


class SileroVADModel:
    """Silero VAD v6 with its weights (default: the file shipped with whisperms), compiled for the
    current MindSpore device. `model(audio)` gives one speech probability per WINDOW_SAMPLES
    samples.

    `fused`: None picks the fused LSTM kernel where it exists; False forces the unrolled recurrence
    (any device). `jit=False` runs the same Cells eagerly (slow; for checking the compiled path)."""

    def __init__(
        self,
        path=None,
        fused=None,
        jit=True,
        windows_per_call=WINDOWS_PER_CALL,
        steps_per_call=STEPS_PER_CALL,
    ):
        state = read_weights(path)
        self.net = SileroVAD()
        try:
            assign_state(self.net, state)
        except CheckpointError as e:
            raise CheckpointError(f"{path or DEFAULT_WEIGHTS}: {e}") from None
        self.net.set_train(False)
        if fused is None:
            fused = ms.get_context("device_target") in FUSED_LSTM_DEVICES
        self.fused = bool(fused)
        self.net.decoder.rnn.fused = self.fused
        if windows_per_call % steps_per_call:
            raise ValueError("windows_per_call must be a multiple of steps_per_call")
        self.windows_per_call = windows_per_call
        self.steps_per_call = steps_per_call
        net = self.net

        def whole(windows, h, c):
            return net(windows, h, c)

        def encode(windows):
            return net.encoder(windows)

        def decode(features, h, c):
            return net.decoder(features, h, c)

        # on CPU from the graph thread, as the Whisper graphs (compute_thread.py)
        on_graph_thread = ms.get_context("device_target") == "CPU"
        self._whole, self._encode, self._decode = (
            Compiled(fn, on_graph_thread)
            if jit
            else partial(compute_thread.run_graph, fn, on_graph_thread=on_graph_thread)
            for fn in (whole, encode, decode)
        )

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(n_windows(len(audio)),) float32 speech probabilities of 16-kHz mono `audio`, the state
        starting at zero. The windows of one call at a time are built from the audio as given, so
        memory holds no copy of it."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        count, per_call = n_windows(len(audio)), self.windows_per_call
        h = c = Tensor(np.zeros((1, HIDDEN), np.float32))
        outputs = []
        for first in range(0, count, per_call):
            batch = Tensor(windows_at(audio, first, per_call))
            if self.fused:
                probs, h, c = self._whole(batch, h, c)
                # read at once: calls left queued behind each other ran several times slower
                outputs.append(probs.asnumpy())
                continue
            features = self._encode(batch)
            steps = min(per_call, count - first)  # steps past the last real window are not run
            for step in range(0, steps, self.steps_per_call):
                probs, h, c = self._decode(features[step : step + self.steps_per_call], h, c)
                outputs.append(probs.asnumpy())
        return np.concatenate(outputs)[:count]


_loading = threading.Lock()


@lru_cache(maxsize=None)
def _cached_model(path, device):
    return SileroVADModel(path)


def get_vad_model(path=None) -> SileroVADModel:
    """The VAD of `path` (default: the shipped weights), loaded and compiled once per process and
    device, whichever threads ask for it first (a server makes its requests ready on several)."""
    with _loading:
        return _cached_model(
            str(path) if path is not None else None, ms.get_context("device_target")
        )
