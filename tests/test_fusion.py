"""Graph-kernel fusion (fusion.py) and the fusible exact GELU it relies on (model.erf)."""

import math
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from whisperms import WhispermsWarning, fusion
from whisperms.model import erf, gelu


def _exact_gelu(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def test_erf_is_float32_accurate_everywhere():
    x = np.linspace(-12.0, 12.0, 240_001).astype(np.float32)
    got = erf(Tensor(x)).asnumpy()
    want = np.vectorize(math.erf)(x.astype(np.float64))
    assert np.abs(got - want).max() < 5e-7
    assert got[0] == -1.0 and got[-1] == 1.0


def test_fused_gelu_matches_exact_gelu(tmp_path, monkeypatch):
    """Compiled with fusion, from a scratch directory: same values as the float64 formula, and no
    file left in the current directory (AKG writes a log into it unless fused_compile moves it). The
    kernel cache is a new empty folder, so the kernels found there afterwards are this compile's,
    not an earlier test's."""
    kernel_folder = tmp_path / "kernels"
    monkeypatch.setattr(fusion, "_cache", None)
    monkeypatch.setenv(fusion.CACHE_ENV, str(kernel_folder))
    tmp_path = tmp_path / "cwd"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).normal(0.0, 3.0, (300, 1536)).astype(np.float32)

    def scaled_gelu(t):
        return gelu(t) * 1.0

    compiled = ms.jit(scaled_gelu)
    before = ms.get_context("enable_graph_kernel")
    with fusion.fused_compile():
        got = compiled(Tensor(x)).asnumpy()
    assert os.getcwd() == str(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert ms.get_context("enable_graph_kernel") == before
    assert fusion.FLAGS_ENV not in os.environ or os.environ[fusion.FLAGS_ENV] != fusion.FLAGS
    assert np.abs(got - _exact_gelu(x)).max() < 2e-6
    assert fusion.kernel_cache() == kernel_folder


KEEPS_KERNELS = """
import numpy as np, mindspore as ms
from mindspore import Tensor
from whisperms import fusion
from whisperms.model import gelu

def scaled_gelu(t):
    return gelu(t) * 1.0

with fusion.fused_compile():
    ms.jit(scaled_gelu)(Tensor(np.ones((30, 16), np.float32))).asnumpy()
print(fusion.kernel_cache())
"""


def test_fused_kernels_are_kept_in_the_kernel_cache(tmp_path):
    """A new process (MindSpore reads its kernel folder once per process, and reuses kernels it
    already built) with an empty kernel cache: the fused compile's generated kernels are found there
    afterwards."""
    script = tmp_path / "keeps_kernels.py"  # a file: jit reads the function's source
    script.write_text(KEEPS_KERNELS)
    env = {**os.environ, fusion.CACHE_ENV: str(tmp_path / "kernels")}
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(tmp_path / "kernels")]
    assert any(p.suffix == ".so" for p in (tmp_path / "kernels" / "akg_kernel_meta").iterdir())


def test_kernel_cache_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(fusion, "_cache", None)
    monkeypatch.setenv(fusion.CACHE_ENV, str(blocked / "kernels"))
    with pytest.warns(WhispermsWarning) as caught:
        cache = fusion.kernel_cache()
    assert [str(w.message) for w in caught] == [
        f"{fusion.CACHE_ENV}={blocked / 'kernels'} is not a folder whisperms can use; kernels are "
        "generated in every process"
    ]
    # the process's own, removed as it exits (test_cli's run without a home folder checks that)
    assert cache.is_dir() and os.access(cache, os.W_OK) and "whisperms-kernels-" in cache.name


def test_no_compiler_means_no_fusion_and_one_line(tmp_path, monkeypatch, tiny_en_model):
    """MindSpore's kernel generator builds kernels with g++, which a slim container image lacks:
    every fused compile failed there, with a warning each and pages of the generator's tracebacks
    on stderr. Without g++ on PATH, graphs compile unfused from the start, said in one line."""
    from whisperms.inference import Inference

    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ (nor anything else)
    fusion.warn_unusable_compiler.cache_clear()
    with pytest.warns(WhispermsWarning) as caught:
        assert not Inference(tiny_en_model).fuse
        assert not Inference(tiny_en_model).fuse
    assert [str(w.message) for w in caught] == [
        "g++ is not on PATH: graphs are compiled without graph-kernel fusion (slower; install g++ "
        "to have it)"
    ]
    monkeypatch.undo()
    assert Inference(tiny_en_model).fuse
