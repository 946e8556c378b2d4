"""core_share under a CPU quota (a container's --cpus, a Kubernetes CPU limit): the quota read from
cgroup files, v1 and v2, and a real process in a real cgroup with a quota of one core."""

import json
import os
import subprocess
import sys
import uuid

import pytest
from user_env import user_env

from whisperms import core_share

from conftest import DATA


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2_tree(root, limits):
    """A unified hierarchy at `root` with cpu.max files: {relative folder: content}."""
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    for folder, content in limits.items():
        _write(root / folder / "cpu.max", content)


def test_v2_quota_is_read_from_cpu_max(tmp_path):
    _v2_tree(tmp_path, {"": "max 100000\n", "kubepods/pod1": "150000 100000\n"})
    assert core_share.cpu_limit(str(tmp_path), "0::/kubepods/pod1\n") == 1.5


def test_v2_the_smallest_quota_along_the_path_counts(tmp_path):
    _v2_tree(tmp_path, {"a": "50000 100000\n", "a/b": "max 100000\n", "a/b/c": "300000 100000"})
    assert core_share.cpu_limit(str(tmp_path), "0::/a/b/c\n") == 0.5


def test_v2_no_quota_and_no_files_mean_none(tmp_path):
    _v2_tree(tmp_path, {"": "max 100000\n", "app": "max 100000\n"})
    assert core_share.cpu_limit(str(tmp_path), "0::/app\n") is None
    assert core_share.cpu_limit(str(tmp_path), "0::/elsewhere\n") is None
    # a cgroup namespace: the process sees its own cgroup as the root
    _write(tmp_path / "cpu.max", "200000 100000\n")
    assert core_share.cpu_limit(str(tmp_path), "0::/\n") == 2.0


def test_v2_beside_v1_hierarchies_in_the_unified_folder(tmp_path):
    _v2_tree(tmp_path / "unified", {"svc": "100000 100000\n"})
    cgroups = "4:memory:/svc\n1:cpu,cpuacct:/svc\n0::/svc\n"
    assert core_share.cpu_limit(str(tmp_path), cgroups) == 1.0


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_v1_quota_is_read_from_the_cfs_files(tmp_path, mount):
    folder = tmp_path / mount / "docker" / "abc"
    _write(folder / "cpu.cfs_quota_us", "50000\n")
    _write(folder / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / mount / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / mount / "cpu.cfs_period_us", "100000\n")
    cgroups = "9:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert core_share.cpu_limit(str(tmp_path), cgroups) == 0.5
    assert core_share.cpu_limit(str(tmp_path), "3:cpu,cpuacct:/\n") is None


@pytest.mark.parametrize("content", ["", "max\n", "abc 100000\n", "100000 0\n", "-5 100000\n"])
def test_unreadable_quotas_are_none(tmp_path, content):
    _v2_tree(tmp_path, {"x": content})
    assert core_share.cpu_limit(str(tmp_path), "0::/x\n") is None
    assert core_share.cpu_limit(str(tmp_path), "garbage\n") is None


@pytest.mark.parametrize(
    "cores, limit, expected",
    [(2, None, 2), (2, 1.0, 1), (2, 1.5, 1), (2, 0.3, 1), (2, 2.0, 2), (2, 8.0, 2), (8, 3.9, 3)],
)
def test_cores_allowed(cores, limit, expected):
    assert core_share.cores_allowed(cores, limit) == expected


SCRIPT = """
import json, sys
from whisperms import core_share, load_model
model = load_model(sys.argv[1])
texts = [model.transcribe(sys.argv[2], language="en", temperature=0.0).text for _ in range(2)]
print(json.dumps([texts, core_share.status(), core_share.cpu_limit()]))
"""


def _quota_cgroup():
    """A new v1 cpu cgroup with a quota of one core, or None where cgroups cannot be made."""
    folder = os.path.join(core_share.CGROUP_ROOT, "cpu", f"whisperms-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(folder)
    except OSError:
        return None
    with open(os.path.join(folder, "cpu.cfs_period_us"), "w") as f:
        f.write("100000")
    with open(os.path.join(folder, "cpu.cfs_quota_us"), "w") as f:
        f.write("100000")
    return folder


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a quota of one core needs two")
def test_a_process_under_a_one_core_quota_runs_on_one_core_with_the_same_text(tiny_en_ct2_dir):
    folder = _quota_cgroup()
    if folder is None:
        pytest.skip("no writable cgroup v1 cpu controller here (needs root)")
    clip = DATA / "jfk_inaugural_1961.flac"
    args = [sys.executable, "-c", SCRIPT, str(tiny_en_ct2_dir), str(clip)]

    def join():
        with open(os.path.join(folder, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    try:
        limited = subprocess.run(
            args, capture_output=True, text=True, timeout=600, env=user_env(), preexec_fn=join
        )
    finally:
        os.rmdir(folder)
    free = subprocess.run(args, capture_output=True, text=True, timeout=600, env=user_env())
    assert limited.returncode == 0 and free.returncode == 0, (limited.stderr + free.stderr)[-2000:]
    texts, (using, cores, _), limit = json.loads(limited.stdout.strip().splitlines()[-1])
    given = sorted(os.sched_getaffinity(0))
    assert limit == 1.0 and cores == given and len(using) == 1
    free_texts, _, free_limit = json.loads(free.stdout.strip().splitlines()[-1])
    assert free_limit is None
    assert texts[0].strip() and set(texts) == set(free_texts) == {texts[0]}
