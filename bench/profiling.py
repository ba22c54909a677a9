"""Profiles of a running process with py-spy (sampling, from outside: nothing changes in the process), and
their hot spots: where samples end (self time) and which of featureplane's functions they pass through."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")
PROJECT_DIRS = ("gateway/", "actors/", "events/", "stores/", "engine/", "sdk/", "deploy/")


def _function(frame: str) -> str:
    """'handle (gateway/app.py:42)' -> 'handle (gateway/app.py)': lines of one function count together."""
    return _LINE.sub(")", frame.strip())


def hot_spots(collapsed: str, top: int = 12) -> dict[str, Any]:
    """From py-spy's raw (collapsed-stack) output: the functions with the most samples at the top of the
    stack, and featureplane's functions with the most samples anywhere in the stack, as shares of all."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if any(folder in name for folder in PROJECT_DIRS):
                inclusive[name] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {"samples": total,
            "self": [{"function": f, "percent": share(n)} for f, n in own.most_common(top)],
            "project_inclusive": [{"function": f, "percent": share(n)} for f, n in inclusive.most_common(top)]}


def record(pid: int, seconds: float, out: Path) -> str | None:
    """py-spy's collapsed stacks of `pid` over `seconds` (blocks that long; run it in a thread next to the
    load); None when py-spy is not installed or may not attach."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    done = subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                           "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        print(f"py-spy failed: {done.stderr[-500:]}", file=sys.stderr, flush=True)
        return None
    return out.read_text()


def start_recording(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` until `stop_recording` (for work whose length is not known beforehand);
    None when py-spy is not installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    out.unlink(missing_ok=True)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_recording(recording: subprocess.Popen[bytes] | None, out: Path, timeout_s: float = 60) -> str | None:
    """Stops a recording as Ctrl-C would (py-spy then writes its output); its collapsed stacks, or None."""
    if recording is None:
        return None
    recording.send_signal(signal.SIGINT)
    try:
        _, err = recording.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        recording.kill()
        recording.communicate()
        return None
    if not out.exists():
        print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr, flush=True)
        return None
    return out.read_text()
