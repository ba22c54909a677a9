"""Resident memory of processes, from /proc (Linux): one process, or a process and all its descendants."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PROC = Path("/proc")


def rss_mib(pid: int) -> float:
    """VmRSS of one process in MiB (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children, ...), found through each one's parent id."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                # The command name may hold spaces and parentheses: the parent id follows the last ')'.
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kind_of(cmdline: str) -> str:
    """What a process of a featureplane deployment is, from its command line."""
    if "kafka.Kafka" in cmdline or ("java" in cmdline and "kafka" in cmdline):
        return "kafka broker"
    if cmdline.startswith("ray::"):
        return f"ray actor {cmdline.split()[0].removeprefix('ray::').split('.')[0]}"
    if "gcs_server" in cmdline or "raylet" in cmdline or "ray/" in cmdline or "ray." in cmdline:
        return "ray runtime"
    return "other"


def tree_rss(root: int) -> dict[str, float]:
    """RSS in MiB of `root` and its descendants, summed by kind (see `kind_of`), plus the total."""
    sums: dict[str, float] = defaultdict(float)
    sums["supervisor"] = rss_mib(root)
    for pid in descendants(root):
        sums[kind_of(command(pid))] += rss_mib(pid)
    result = {name: round(value, 1) for name, value in sums.items()}
    result["total"] = round(sum(sums.values()), 1)
    return result
