"""Where a benchmark's results go: `results/<prefix>-<UTC minute>-<commit>.json` (the raw numbers)
and `.md` (its table), named by the commit measured. Standard library only."""

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def short_commit() -> str:
    """The checkout's commit, abbreviated as git does ('' outside a git checkout)."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def write_results(out, prefix: str, commit: str, report: dict, lines: list) -> Path:
    """Write `report` as JSON and `lines` as Markdown under `out`, print the table and the names
    written; returns the files' common stem."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{prefix}-{datetime.now(timezone.utc):%Y%m%dT%H%M}-{commit}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {stem}.json and {stem}.md")
    return stem
