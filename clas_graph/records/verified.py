"""Reading back what the project wrote, never trusting it blindly: a file that is missing, truncated, not
valid JSON or not what its record says it is reads as None, and the caller recomputes (or rebuilds) it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape


def read_json(path: Path):
    """The parsed JSON at `path`, or None when it cannot be read or parsed (missing, truncated, emptied)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """The file's SHA-256, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def warn_damaged(path: Path, what_happens: str) -> None:
    """One line on stderr: which file was damaged and what is done about it."""
    Console(stderr=True).print(f"[yellow]{escape(str(path))} is damaged; {escape(what_happens)}[/]",
                               highlight=False, soft_wrap=True)
