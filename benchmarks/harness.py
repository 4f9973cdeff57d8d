"""Benchmark plumbing: every side of a case runs in a fresh interpreter, so the time and the peak memory
it reports are its own (peak RSS of that process, imports included), and one side's caches never help
the other."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@contextmanager
def report(extra: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """In a worker: time the block, then print one JSON line with ``seconds``, ``peak_mb`` and whatever
    the block put into the yielded dict."""
    result: dict[str, Any] = dict(extra or {})
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result), flush=True)


def measure(script: Path, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh interpreter and return the JSON line it printed last."""
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass(frozen=True)
class Row:
    case: str
    shape: str
    ours_s: float
    ours_mb: float | None
    base_s: float | None
    base_mb: float | None
    agreement: str

    def cells(self) -> list[str]:
        ratio = "—"
        if self.base_s:
            speedup = self.base_s / self.ours_s
            ratio = f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
        return [self.case, self.shape, _cell(self.ours_s, self.ours_mb), _cell(self.base_s, self.base_mb), ratio,
                self.agreement]  # fmt: skip


def _cell(seconds: float | None, peak_mb: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.2f} s" + (f", {peak_mb:.0f} MB" if peak_mb is not None else "")


HEADER = ["case", "rows x cols", "ours (s, peak MB)", "baseline (s, peak MB)", "ratio", "agreement"]


def table(rows: list[Row]) -> str:
    lines = [HEADER, ["---"] * len(HEADER), *(row.cells() for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def shape(rows: int, columns: int) -> str:
    return f"{rows / 1e6:g}M x {columns}" if rows >= 1_000_000 else f"{rows / 1e3:g}k x {columns}"
