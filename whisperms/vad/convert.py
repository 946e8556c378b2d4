"""Silero VAD v6 ONNX file (the 16 kHz export faster-whisper ships) -> whisperms VAD weights
(safetensors).

    python -m whisperms.vad.convert [ONNX] [OUTPUT]

The `onnx` package is needed here only, never at run time.
"""

import sys
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .model import (
    CONTEXT_SAMPLES,
    ENCODER_CHANNELS,
    HIDDEN,
    HOP,
    INPUT_SAMPLES,
    KERNEL,
    N_BINS,
    N_FFT,
)
from .weights import DEFAULT_WEIGHTS, check_state, write_weights

ONNX_FILE = "silero_vad_v6.onnx"
_BIG = 2**62  # ONNX Slice's "to the end" (INT64_MAX in the export)

# ONNX's LSTM gate blocks are (i, o, f, c); torch.nn.LSTMCell's and MindSpore's LSTM kernel's are
# (i, f, g, o).
_ONNX_TO_TORCH_GATES = (0, 2, 3, 1)


def faster_whisper_onnx() -> Path:
    """The ONNX file inside the installed faster-whisper package (found without importing it)."""
    from importlib.util import find_spec

    spec = find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "faster-whisper is not installed: give the path of silero_vad_v6.onnx"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / ONNX_FILE


class _Node:
    """An ONNX node and where it is, for messages."""

    def __init__(self, proto, position):
        self.proto = proto
        self.op_type = proto.op_type
        self.input = list(proto.input)
        self.output = list(proto.output)
        self.where = f"node {position} ({proto.name or proto.op_type})"


class _Graph:
    """The ONNX graph read node by node; initializers are handed out once each, so leftovers can be
    reported."""

    def __init__(self, model, path):
        from onnx import numpy_helper

        self.path = path
        self.nodes = list(model.graph.node)
        self.initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.used = set()
        self.position = 0

    def fail(self, what):
        return CheckpointError(f"{self.path}: not the Silero VAD v6 16 kHz graph: {what}")

    def next(self, op_type, **attributes):
        """The next node, which must be `op_type` with no attributes but these, each absent (its
        default) or equal to the value given."""
        from onnx import helper

        if self.position >= len(self.nodes):
            raise self.fail(f"the graph ends where a {op_type} node was expected")
        node = _Node(self.nodes[self.position], self.position)
        self.position += 1
        if node.op_type != op_type:
            raise self.fail(f"{node.where} is {node.op_type}, expected {op_type}")
        for attribute in node.proto.attribute:
            value = helper.get_attribute_value(attribute)
            value = value.decode() if isinstance(value, bytes) else value
            if attribute.name not in attributes:
                raise self.fail(f"{node.where} has unexpected attribute {attribute.name}={value!r}")
            want = attributes[attribute.name]
            same = (
                value == want
                if isinstance(want, str)
                else np.array_equal(np.atleast_1d(value), np.atleast_1d(want))
            )
            if not same:
                raise self.fail(f"{node.where} has {attribute.name}={value!r}, expected {want!r}")
        return node

    def tensor(self, node, index, shape=None, shared=False):
        """Input `index` of `node`: an initializer of `shape` if given; a weight (not `shared`) is
        used once only."""
        name = node.input[index] if index < len(node.input) else ""
        if name not in self.initializers:
            raise self.fail(
                f"{node.where}: input {index} ({name or 'absent'}) is not a stored tensor"
            )
        if name in self.used and not shared:
            raise self.fail(f"{node.where}: tensor {name} is used twice")
        self.used.add(name)
        value = self.initializers[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise self.fail(
                f"{node.where}: tensor {name} has shape {tuple(value.shape)}, expected "
                f"{tuple(shape)}"
            )
        return value

    def constant(self, node, index, want):
        """Input `index` of `node`: a stored constant equal to `want` (the export shares constants
        between nodes)."""
        value = self.tensor(node, index, shared=True)
        if value.shape != np.shape(want) or not np.array_equal(
            np.minimum(value, _BIG), np.minimum(want, _BIG)
        ):
            raise self.fail(
                f"{node.where}: constant input {index} is {value.tolist()}, "
                f"expected {np.asarray(want).tolist()}"
            )

    def finish(self):
        if self.position != len(self.nodes):
            raise self.fail(
                f"unexpected {_Node(self.nodes[self.position], self.position).where} after the "
                "output"
            )
        unused = sorted(set(self.initializers) - self.used)
        if unused:
            raise self.fail(f"tensor {unused[0]} is not used by the network")


def _check_io(model, path):
    """Inputs (windows of INPUT_SAMPLES, h, c), outputs (probabilities, h, c)."""

    def dims(value):
        return [
            d.dim_value if d.HasField("dim_value") else None
            for d in value.type.tensor_type.shape.dim
        ]

    inputs = {v.name: dims(v) for v in model.graph.input}
    want = {"input": [None, INPUT_SAMPLES], "h": [1, 1, HIDDEN], "c": [1, 1, HIDDEN]}
    if inputs != want:
        raise CheckpointError(
            f"{path}: not the Silero VAD v6 16 kHz graph: inputs {inputs}, expected {want} "
            f"(windows of {CONTEXT_SAMPLES} context + {INPUT_SAMPLES - CONTEXT_SAMPLES} samples)"
        )
    outputs = [v.name for v in model.graph.output]
    if outputs != ["speech_probs", "hn", "cn"]:
        raise CheckpointError(f"{path}: not the Silero VAD v6 16 kHz graph: outputs {outputs}")


def _gates(array):
    """(4 * HIDDEN, ...) in ONNX gate order -> torch gate order."""
    blocks = np.split(array, 4, axis=0)
    return np.concatenate([blocks[i] for i in _ONNX_TO_TORCH_GATES], axis=0)


def read_onnx(path) -> dict:
    """The state (model.py's parameter names) of a Silero VAD v6 16 kHz ONNX file; CheckpointError
    otherwise.

    Strict: the graph must be the exact sequence of operators model.py implements, every attribute
    and constant it relies on must have the value model.py assumes, every initializer must be
    consumed, and every weight must have its shape; otherwise a one-line CheckpointError names the
    first difference."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError(
            "converting the VAD needs the onnx package: pip install onnx"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    _check_io(model, path)
    g = _Graph(model, path)
    state = {}

    # STFT: reflect pad, Fourier basis as a strided conv, real/imaginary halves without the first
    # frame, magnitude.
    g.constant(g.next("Pad", mode="reflect"), 1, [0, HOP, 0, HOP])
    g.constant(g.next("Unsqueeze"), 1, [1])
    conv = g.next("Conv", dilations=[1], group=1, kernel_shape=[N_FFT], pads=[0, 0], strides=[HOP])
    if len(conv.input) != 2:
        raise g.fail(f"{conv.where}: the STFT conv has a bias")
    state["encoder.feature_extractor.forward_basis_buffer"] = g.tensor(
        conv, 1, (2 * N_BINS, 1, N_FFT)
    )
    for start, end in ((0, N_BINS), (N_BINS, _BIG)):
        node = g.next("Slice")
        g.constant(node, 1, [start, 1])
        g.constant(node, 2, [end, _BIG])
        g.constant(node, 3, [1, 2])
        g.constant(node, 4, [1, 1])
    for _ in range(2):
        g.constant(g.next("Pow"), 1, np.float32(2.0))
    g.next("Add")
    g.next("Sqrt")

    for i, (n_in, n_out, stride) in enumerate(ENCODER_CHANNELS):
        conv = g.next(
            "Conv", dilations=[1], group=1, kernel_shape=[KERNEL], pads=[1, 1], strides=[stride]
        )
        state[f"encoder.conv_layers.{i}.weight"] = g.tensor(conv, 1, (n_out, n_in, KERNEL))
        state[f"encoder.conv_layers.{i}.bias"] = g.tensor(conv, 2, (n_out,))
        g.next("Relu")

    g.next("Transpose", perm=[0, 2, 1])
    lstm = g.next("LSTM", hidden_size=HIDDEN, direction="forward", layout=0, input_forget=0)
    if lstm.input[4:] != ["", "h", "c"] or lstm.output[1:] != ["hn", "cn"]:
        raise g.fail(
            f"{lstm.where}: the LSTM does not carry the state from inputs h, c to outputs hn, cn"
        )
    state["decoder.rnn.weight_ih"] = _gates(g.tensor(lstm, 1, (1, 4 * HIDDEN, HIDDEN))[0])
    state["decoder.rnn.weight_hh"] = _gates(g.tensor(lstm, 2, (1, 4 * HIDDEN, HIDDEN))[0])
    bias = g.tensor(lstm, 3, (1, 8 * HIDDEN))[0]
    state["decoder.rnn.bias_ih"] = _gates(bias[: 4 * HIDDEN])
    state["decoder.rnn.bias_hh"] = _gates(bias[4 * HIDDEN :])

    g.constant(g.next("Squeeze"), 1, [1])
    g.next("Relu")
    g.next("Transpose", perm=[1, 2, 0])
    conv = g.next("Conv", dilations=[1], group=1, kernel_shape=[1], pads=[0, 0], strides=[1])
    state["decoder.conv1d.weight"] = g.tensor(conv, 1, (1, HIDDEN, 1))
    state["decoder.conv1d.bias"] = g.tensor(conv, 2, (1,))
    g.next("Sigmoid")
    g.constant(g.next("Reshape", allowzero=0), 1, [-1])
    g.finish()

    state = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}
    check_state(state, path)
    return state


def convert(onnx_path=None, output=None) -> Path:
    """Convert `onnx_path` (default: faster-whisper's `faster_whisper/assets/silero_vad_v6.onnx`)
    and write the weights to `output` (default: the file whisperms ships)."""
    onnx_path = Path(onnx_path) if onnx_path is not None else faster_whisper_onnx()
    output = Path(output) if output is not None else DEFAULT_WEIGHTS
    state = read_onnx(onnx_path)
    write_weights(state, output, source=onnx_path.name)
    return output


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 2 or any(a.startswith("-") for a in argv):
        print("usage: python -m whisperms.vad.convert [ONNX] [OUTPUT]", file=sys.stderr)
        return 2
    try:
        print(convert(*argv))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
