"""Silero VAD v6 (16 kHz) as MindSpore Cells, parameter names equal to Silero's PyTorch state dict.

The convolutions run over time axes of 4, 2 and 1 frames, channels-last, each as one MatMul of a
window's whole (frames x channels) input by the conv unrolled over those few frames, so the same
Cells run on any device.
"""

import mindspore as ms
import numpy as np
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import initializer

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512  # new samples per window: 32 ms, one probability each
CONTEXT_SAMPLES = 64  # samples of the previous window prepended to each window
INPUT_SAMPLES = CONTEXT_SAMPLES + WINDOW_SAMPLES
N_FFT = 256  # length of the Fourier basis (the STFT "conv" kernel)
HOP = N_FFT // 2  # its stride
N_BINS = N_FFT // 2 + 1  # real and imaginary parts are stacked in the basis: 2 * N_BINS rows
# 4 frames over the input reflect-padded by HOP on the right
N_FRAMES = (INPUT_SAMPLES + HOP - N_FFT) // HOP + 1
HIDDEN = 128  # encoder output and LSTM state width
# (in, out, stride) per conv
ENCODER_CHANNELS = ((N_BINS, 128, 1), (128, 64, 2), (64, 64, 2), (64, HIDDEN, 1))
KERNEL = 3  # every encoder conv: kernel 3, padding 1

_MATMUL_T = ops.MatMul(transpose_b=True)
_MATMUL = ops.MatMul()
_BIAS_ADD = ops.BiasAdd()
_GATHER = ops.Gather()
_SQRT = ops.Sqrt()
_RELU = ops.ReLU()
_SIGMOID = ops.Sigmoid()
_TANH = ops.Tanh()
_CONCAT_ROWS = ops.Concat(0)


def _zeros(*shape):
    """A lazily initialized placeholder: every parameter is replaced by the loaded weights."""
    return initializer("zeros", shape, ms.float32)


def frame_indices() -> np.ndarray:
    """(N_FRAMES, N_FFT) input sample read by each STFT tap.

    Silero reflect-pads the window by HOP on both sides, convolves with stride HOP and drops the
    first frame, so the frames start at input samples 0, HOP, 2 HOP, ...; the last one runs 64
    samples past the input into the right reflection (sample INPUT_SAMPLES + j reads INPUT_SAMPLES -
    2 - j); the left padding is never read.
    """
    index = np.arange(N_FRAMES)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return np.where(index < INPUT_SAMPLES, index, 2 * (INPUT_SAMPLES - 1) - index).astype(np.int32)


def tap_indices(length: int, stride: int) -> np.ndarray:
    """(T_out, KERNEL) frame of the zero-padded input read by each tap of a kernel-3, padding-1
    conv."""
    n_out = (length + 2 - KERNEL) // stride + 1
    return (np.arange(n_out)[:, None] * stride + np.arange(KERNEL)[None, :]).astype(np.int32)


def unrolled_taps(length: int, stride: int) -> np.ndarray:
    """(T_in, T_out) which tap links input frame t_in to output frame t_out in a kernel-3,
    padding-1 conv over `length` frames: 1 + the tap's index, or 0 where none does (the padding
    frames are zeros, so their taps drop out)."""
    taps = tap_indices(length, stride)
    table = np.zeros((length, len(taps)), np.int32)
    for t_out, padded in enumerate(taps):
        for k, frame in enumerate(padded - 1):  # the padded input's frame 0 is padding
            if 0 <= frame < length:
                table[frame, t_out] = k + 1
    return table


class STFT(nn.Cell):
    """(R, INPUT_SAMPLES) -> (R, N_FRAMES, N_BINS) magnitudes, through Silero's Fourier basis."""

    def __init__(self):
        super().__init__()
        self.forward_basis_buffer = Parameter(
            _zeros(2 * N_BINS, 1, N_FFT), name="forward_basis_buffer", requires_grad=False
        )
        self.frames = ms.Tensor(frame_indices())

    def construct(self, x):
        frames = _GATHER(x, self.frames, 1).reshape(-1, N_FFT)  # (R * N_FRAMES, N_FFT)
        spectrum = _MATMUL_T(frames, self.forward_basis_buffer.reshape(2 * N_BINS, N_FFT))
        real, imag = spectrum[:, :N_BINS], spectrum[:, N_BINS:]
        return _SQRT(real * real + imag * imag).reshape(-1, N_FRAMES, N_BINS)


class Conv(nn.Cell):
    """Kernel-3, padding-1 conv + ReLU over (R, T, in) -> (R, T_out, out) as one MatMul: each
    window's (T * in) input by the conv unrolled over its T frames, a (T * in, T_out * out) matrix
    of the weight's taps and zero blocks.

    `length` (the input's T, at most 4 frames) is fixed by the architecture, so the unrolled matrix
    is one Gather with constant indices and small; a pad and a gather of the taps per call cost far
    more than its zero blocks.
    """

    def __init__(self, n_in, n_out, stride, length):
        super().__init__()
        self.weight = Parameter(_zeros(n_out, n_in, KERNEL), name="weight")
        self.bias = Parameter(_zeros(n_out), name="bias")
        self.table = ms.Tensor(unrolled_taps(length, stride))
        self.n_out_frames = self.table.shape[1]
        self.no_tap = ms.Tensor(np.zeros((1, n_in, n_out), np.float32))

    def construct(self, x):
        length, n_in = x.shape[-2], x.shape[-1]
        # (1 + KERNEL, in, out): no tap, then each tap's (in, out) matrix
        taps = _CONCAT_ROWS((self.no_tap, self.weight.transpose(2, 1, 0)))
        # (T_in, T_out, in, out) -> (T_in * in, T_out * out)
        unrolled = _GATHER(taps, self.table, 0).transpose(0, 2, 1, 3)
        unrolled = unrolled.reshape(length * n_in, -1)
        y = _MATMUL(x.reshape(-1, length * n_in), unrolled)
        y = _RELU(_BIAS_ADD(y.reshape(-1, self.bias.shape[0]), self.bias))
        return y.reshape(-1, self.n_out_frames, y.shape[-1])


class Encoder(nn.Cell):
    """(R, INPUT_SAMPLES) windows -> (R, HIDDEN) features, each window on its own."""

    def __init__(self):
        super().__init__()
        self.feature_extractor = STFT()
        layers, length = [], N_FRAMES
        for n_in, n_out, stride in ENCODER_CHANNELS:
            layers.append(Conv(n_in, n_out, stride, length))
            length = layers[-1].n_out_frames
        if length != 1:
            raise AssertionError(f"the encoder should end with one frame, not {length}")
        self.conv_layers = nn.CellList(layers)

    def construct(self, x):
        x = self.feature_extractor(x)
        for layer in self.conv_layers:
            x = layer(x)
        return x.reshape(-1, HIDDEN)


class LSTMCell(nn.Cell):
    """torch.nn.LSTMCell's parameters (gates in i, f, g, o order), run over R consecutive steps.

    `fused` (set by the runner): True runs MindSpore's LSTM kernel (CPU and GPU only) over all R
    steps in one op; False unrolls R cell steps into the graph (any device; the runner then keeps R
    small).
    """

    def __init__(self):
        super().__init__()
        self.weight_ih = Parameter(_zeros(4 * HIDDEN, HIDDEN), name="weight_ih")
        self.weight_hh = Parameter(_zeros(4 * HIDDEN, HIDDEN), name="weight_hh")
        self.bias_ih = Parameter(_zeros(4 * HIDDEN), name="bias_ih")
        self.bias_hh = Parameter(_zeros(4 * HIDDEN), name="bias_hh")
        self.lstm = ops.LSTM(HIDDEN, HIDDEN, 1, True, False, 0.0)
        self.fused = True

    def construct(self, x, h, c):
        """x (R, HIDDEN), h and c (1, HIDDEN) -> (every step's h (R, HIDDEN), last h, last c)."""
        if self.fused:
            # The kernel's weight blob: W_ih, W_hh, then one bias, flattened, in the same gate
            # order.
            weights = _CONCAT_ROWS(
                (
                    self.weight_ih.reshape(-1),
                    self.weight_hh.reshape(-1),
                    self.bias_ih + self.bias_hh,
                )
            ).reshape(-1, 1, 1)
            hs, h, c, _, _ = self.lstm(
                x.reshape(-1, 1, HIDDEN), h.reshape(1, 1, HIDDEN), c.reshape(1, 1, HIDDEN), weights
            )
            return hs.reshape(-1, HIDDEN), h.reshape(1, HIDDEN), c.reshape(1, HIDDEN)
        # all steps at once
        inputs = _BIAS_ADD(_MATMUL_T(x, self.weight_ih), self.bias_ih + self.bias_hh)
        hs = []
        for t in range(x.shape[0]):
            gates = inputs[t : t + 1] + _MATMUL_T(h, self.weight_hh)
            i, f, g, o = (
                gates[:, :HIDDEN],
                gates[:, HIDDEN : 2 * HIDDEN],
                gates[:, 2 * HIDDEN : 3 * HIDDEN],
                gates[:, 3 * HIDDEN :],
            )
            c = _SIGMOID(f) * c + _SIGMOID(i) * _TANH(g)
            h = _SIGMOID(o) * _TANH(c)
            hs.append(h)
        return _CONCAT_ROWS(hs), h, c


class Head(nn.Cell):
    """Silero's decoder conv1d (kernel 1, one output channel): ReLU(h) -> sigmoid(w . h + b), per
    step."""

    def __init__(self):
        super().__init__()
        self.weight = Parameter(_zeros(1, HIDDEN, 1), name="weight")
        self.bias = Parameter(_zeros(1), name="bias")

    def construct(self, hs):
        return _SIGMOID(
            _BIAS_ADD(_MATMUL_T(_RELU(hs), self.weight.reshape(1, HIDDEN)), self.bias)
        ).reshape(-1)


class Decoder(nn.Cell):
    """(R, HIDDEN) features of consecutive windows and the state before them -> R probabilities,
    state after."""

    def __init__(self):
        super().__init__()
        self.rnn = LSTMCell()
        self.conv1d = Head()

    def construct(self, x, h, c):
        hs, h, c = self.rnn(x, h, c)
        return self.conv1d(hs), h, c


class SileroVAD(nn.Cell):
    """`SileroVAD(windows, h, c)`: (R, CONTEXT_SAMPLES + WINDOW_SAMPLES) consecutive windows and the
    LSTM state (h, c) before the first -> R speech probabilities and the state after the last.

    One window is `WINDOW_SAMPLES` new samples after `CONTEXT_SAMPLES` samples of the window before
    it. Per window: a magnitude STFT (a fixed Fourier basis applied to 4 overlapping frames), four
    kernel-3 convolutions with ReLU down to one 128-d vector (the encoder), then an LSTM cell whose
    state runs from window to window, and a 1x1 convolution with a sigmoid giving the speech
    probability (the decoder). The encoder sees one window at a time, so it runs on any number of
    windows in one call; only the LSTM recurrence is sequential.
    """

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def construct(self, windows, h, c):
        """(R, INPUT_SAMPLES) consecutive windows, state (1, HIDDEN) x 2 -> (R,) probabilities,
        state after."""
        return self.decoder(self.encoder(windows), h, c)
