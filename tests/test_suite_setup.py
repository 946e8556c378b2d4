"""The test run itself: its own empty caches (conftest.pytest_configure), the hub offline, and the
`slow` marker selecting what README's "Running the tests" says."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def under(path, folder):
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def test_caches_are_the_runs_own(session_state):
    """Graphs, kernels, named models and the hub's files all go to this run's folder, never to
    ~/.cache."""
    from whisperms import fusion, graph_cache, hub

    assert session_state.name.startswith("whisperms-tests-")
    assert under(graph_cache.graph_folder(), session_state)
    assert under(fusion.kernel_cache(), session_state)
    assert under(hub.weights_root(), session_state)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    for name in ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "WHISPERMS_WEIGHTS"):
        assert under(os.environ[name], session_state), name
    for name in ("WHISPERMS_GRAPH_CACHE", "MS_COMPILER_CACHE_PATH"):
        assert name not in os.environ or under(os.environ[name], session_state), name
    # reads its settings once, at import: it must have seen the run's
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE
    assert under(huggingface_hub.constants.HF_HUB_CACHE, session_state)


def collected(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line for line in proc.stdout.splitlines() if "::" in line}


def test_slow_runs_only_with_m_slow():
    """The default run leaves out exactly the tests marked slow; `-m slow` selects them and nothing
    else."""
    files = ["tests/test_compiled.py", "tests/test_kernels.py"]
    default, slow, everything = (
        collected(*files),
        collected("-m", "slow", *files),
        collected("-m", "", *files),
    )
    assert slow and default and not slow & default
    assert default | slow == everything
    assert all("all_clips" in test for test in slow)  # the sweeps over every clip, as README says
    assert any(test.startswith("tests/test_compiled.py") for test in slow)
    assert any(test.startswith("tests/test_kernels.py") for test in slow)
