"""Many CLI argument lists checked in one fresh interpreter: each one's exit status, stderr lines,
and whether MindSpore was imported by then (usage errors come before it is)."""

import json
import subprocess
import sys

# The CLI's checks run in a fresh interpreter that reports, for each argument list, the exit status,
# stderr, and whether MindSpore was imported by then (it must not be: these errors come before any
# model is loaded).
_HARNESS = """
import contextlib, io, json, sys
from whisperms.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    results.append([status, err.getvalue().splitlines(), "mindspore" in sys.modules])
print(json.dumps(results))
"""


def cli_checks(cases, cwd=None):
    """Run every (argv, exit status, stderr lines) case through whisperms.cli.main in one new
    process and assert each one's status and lines, and that MindSpore was not imported; returns how
    many ran."""
    argvs = [[str(a) for a in argv] for argv, _, _ in cases]
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(cases)
    for (argv, status, lines), (got_status, got_lines, imported) in zip(cases, results):
        assert (got_status, got_lines) == (status, lines), argv
        assert not imported, f"{argv}: MindSpore imported before the error"
    return len(cases)
