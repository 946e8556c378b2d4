"""Speech probabilities of a whole file: windows cut as faster-whisper cuts them, run through compiled graphs.

Where MindSpore has a fused LSTM kernel (CPU, GPU), one graph takes `WINDOWS_PER_CALL` windows and the state before
them, runs the encoder on all of them at once and the recurrence over them in one kernel, and returns their
probabilities and the state after them: a file costs one call per WINDOWS_PER_CALL windows (32.8 s of audio), the
last call padded with silent windows (their outputs are dropped; the state after them is never used).
Elsewhere (Ascend) the encoder graph takes WINDOWS_PER_CALL windows and a second graph unrolls `STEPS_PER_CALL` LSTM
steps; the recurrence then costs one call per STEPS_PER_CALL windows.
Both graphs have static shapes, so a process compiles each once.
"""
from functools import lru_cache

import numpy as np
import mindspore as ms
from mindspore import Tensor

from ..convert import assign_state
from ..errors import CheckpointError
from .model import CONTEXT_SAMPLES, HIDDEN, INPUT_SAMPLES, WINDOW_SAMPLES, SileroVAD
from .weights import DEFAULT_WEIGHTS, read_weights

WINDOWS_PER_CALL = 1024
STEPS_PER_CALL = 32
FUSED_LSTM_DEVICES = ("CPU", "GPU")  # where MindSpore's LSTM kernel exists


def n_windows(n_samples: int) -> int:
    """Windows faster-whisper runs for `n_samples` samples: it pads to the next multiple of WINDOW_SAMPLES, and
    with a full window of zeros when the length already is one."""
    return n_samples // WINDOW_SAMPLES + 1


def silero_windows(audio: np.ndarray) -> np.ndarray:
    """(n_windows, INPUT_SAMPLES) model inputs for `audio`, as faster-whisper builds them: window i is the last
    CONTEXT_SAMPLES samples of window i - 1 (zeros for the first) then its own WINDOW_SAMPLES samples (zero-padded
    at the end of the file). faster-whisper also zeroes the last window's own final CONTEXT_SAMPLES samples (it
    clears the last context in place, and that context is a view of the audio), and so does this, so that the
    probabilities are the same."""
    count = n_windows(len(audio))
    samples = np.zeros(count * WINDOW_SAMPLES, np.float32)
    samples[:len(audio)] = audio
    samples[-CONTEXT_SAMPLES:] = 0.0
    own = samples.reshape(count, WINDOW_SAMPLES)
    windows = np.zeros((count, INPUT_SAMPLES), np.float32)
    windows[:, CONTEXT_SAMPLES:] = own
    windows[1:, :CONTEXT_SAMPLES] = own[:-1, -CONTEXT_SAMPLES:]
    return windows


class SileroVADModel:
    """Silero VAD v6 with its weights (default: the file shipped with whisperms), compiled for the current
    MindSpore device. `model(audio)` gives one speech probability per WINDOW_SAMPLES samples.

    `fused`: None picks the fused LSTM kernel where it exists; False forces the unrolled recurrence (any device).
    `jit=False` runs the same Cells eagerly (slow; for checking the compiled path)."""

    def __init__(self, path=None, fused=None, jit=True, windows_per_call=WINDOWS_PER_CALL,
                 steps_per_call=STEPS_PER_CALL):
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

        self._whole, self._encode, self._decode = (ms.jit(fn) if jit else fn for fn in (whole, encode, decode))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(n_windows(len(audio)),) float32 speech probabilities of 16-kHz mono `audio`."""
        return self.probabilities(silero_windows(np.asarray(audio, dtype=np.float32).reshape(-1)))

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities of consecutive (N, INPUT_SAMPLES) windows, the state starting at zero."""
        count, per_call = len(windows), self.windows_per_call
        padded = np.zeros((-(-count // per_call) * per_call, INPUT_SAMPLES), np.float32)
        padded[:count] = windows
        h = c = Tensor(np.zeros((1, HIDDEN), np.float32))
        outputs = []
        for start in range(0, count, per_call):
            batch = Tensor(padded[start:start + per_call])
            if self.fused:
                probs, h, c = self._whole(batch, h, c)
                outputs.append(probs)
                continue
            features = self._encode(batch)
            steps = min(per_call, count - start)  # steps past the last real window are not run
            for step in range(0, steps, self.steps_per_call):
                probs, h, c = self._decode(features[step:step + self.steps_per_call], h, c)
                outputs.append(probs)
        if not outputs:
            return np.zeros(0, np.float32)
        return np.concatenate([p.asnumpy() for p in outputs])[:count]


@lru_cache(maxsize=None)
def _cached_model(path, device):
    return SileroVADModel(path)


def get_vad_model(path=None) -> SileroVADModel:
    """The VAD of `path` (default: the shipped weights), loaded and compiled once per process and device."""
    return _cached_model(str(path) if path is not None else None, ms.get_context("device_target"))
