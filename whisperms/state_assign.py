"""Weights into a network: `assign_state` loads a state dict into a MindSpore Cell one-to-one (the
Whisper network, the VAD's), every check before any write."""

import numpy as np

from .errors import CheckpointError


def assign_state(model, state: dict, where=None):
    """Load `state` into a `whisperms.model.Whisper` one-to-one: every parameter, equal shapes,
    nothing left over.

    All checks run before any parameter is written; a mismatch raises CheckpointError naming the
    first offender (and `where`, the checkpoint's path, when given).
    """
    at = f"{where}: " if where else ""
    import mindspore as ms

    params = list(model.parameters_and_names())
    for name, param in params:
        if name not in state:
            raise CheckpointError(f"{at}missing parameter {name}")
        have, want = tuple(state[name].shape), tuple(param.shape)
        if have != want:
            raise CheckpointError(
                f"{at}shape mismatch for {name}: checkpoint {have} vs model {want}"
            )
    known = {name for name, _ in params}
    for name in state:
        if name not in known:
            raise CheckpointError(f"{at}unexpected tensor {name}")
    np_types = {ms.float32: np.float32, ms.float16: np.float16}
    arrays = []
    for name, param in params:
        array = np.ascontiguousarray(state[name], dtype=np_types.get(param.dtype, np.float32))
        # a view of the file or of the caller's array
        if not (array.flags.owndata and array.flags.writeable):
            array = array.copy()
        # a sum of finite weights is finite (they are far from float32's range): one pass, no mask;
        # damaged bytes in a file loaded and transcribed to nothing, without a word
        if not np.isfinite(np.sum(array, dtype=np.float32)):
            raise CheckpointError(
                f"{at}{name} holds NaN or infinite values: the checkpoint is damaged"
            )
        arrays.append(array)
    for (name, param), array in zip(params, arrays):
        # from_numpy shares the array's memory; Tensor(array) would copy the whole checkpoint once
        # more
        tensor = ms.Tensor.from_numpy(array)
        # e.g. bfloat16
        param.set_data(tensor if param.dtype in np_types else tensor.astype(param.dtype))
    return model
