"""The documentation builds in strict mode, and its code blocks run, so the docs cannot drift from the code.

Every fenced block in README.md and docs/ is one of:
- executed: `python` (run as a script from the repository root), `yaml` (a complete spec, or with
  `<!-- fragment: specs/X.yaml -->` a part merged over that spec with `include:`, validated like a file), `bash`
  whose every command is a cheap `clas-graph validate|compile|schema` (run in-process);
- marked `<!-- not-run: REASON -->` on the line before it (hub models, NDIF, GPUs, multi-minute runs);
- `text`: formulas, diagrams and file layouts, which are not code.
`<!-- slow -->` before a block runs it under pytest's `slow` marker (it needs the embedded model).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(\s*)```(.*)$")
MARKER = re.compile(r"^\s*<!--\s*(not-run|slow|fragment)\s*(?::\s*(.*?))?\s*-->\s*$")
CHEAP_COMMANDS = ("validate", "schema", "compile")
SHELL_OPERATORS = {">", ">>", "|", "&&", "||", ";"}


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    lang: str
    code: str
    marker: str | None = None
    arg: str = ""

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def parse_blocks(text: str, path: str) -> list[Block]:
    """Fenced blocks with the marker comment on the nearest non-blank line above each (indented fences too)."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.group(1), match.group(2).strip()
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARKER.match(above)
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n",
                            mark.group(1) if mark else None, (mark.group(2) or "") if mark else ""))
        i += 1
    return blocks


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in parse_blocks(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]


def commands(code: str) -> list[list[str]]:
    """Shell commands of a block: backslash continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [argv for line in joined.split("\n") if (argv := shlex.split(line, comments=True))]


def cheap(argv: list[str]) -> bool:
    """A clas-graph command that reads no weights and writes nothing (no redirection or pipes)."""
    return len(argv) > 1 and argv[0] == "clas-graph" and argv[1] in CHEAP_COMMANDS and not SHELL_OPERATORS & set(argv)


def problem(block: Block) -> str | None:
    """Why a block is neither executed nor marked with a reason (None: it is fine)."""
    if block.marker == "not-run":
        return None if block.arg else "`not-run` needs a reason: <!-- not-run: REASON -->"
    if block.lang == "text":
        return None if block.marker is None else "a `text` block is not code: drop its marker"
    if block.marker == "fragment" and (block.lang != "yaml" or not (ROOT / block.arg).is_file()):
        return f"`fragment` takes an existing spec file and applies to yaml blocks (got {block.arg!r})"
    if block.lang == "python" or block.lang == "yaml":
        return None
    if block.lang == "bash":
        bad = [" ".join(argv) for argv in commands(block.code) if not cheap(argv)]
        return None if not bad else f"not a cheap clas-graph command: {bad[0]!r}; run it or mark it not-run"
    return f"a block labelled {block.lang!r} can be neither run nor checked: label it text or mark it not-run"


def runnable(blocks: list[Block]) -> list:
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.marker == "slow" else [])
            for b in blocks if b.marker != "not-run" and b.lang in ("python", "yaml", "bash") and not problem(b)]


BLOCKS = all_blocks()


def test_every_block_is_executed_or_marked():
    problems = [f"{b.id}: {why}" for b in BLOCKS if (why := problem(b))]
    assert not problems, "\n".join(problems)
    assert runnable(BLOCKS), "no executable block found: the parser is broken"


def test_the_checker_refuses_unmarked_and_unreasoned_blocks():
    text = "\n".join([
        "```bash", "make demo", "```",
        "<!-- not-run: -->", "```python", "x = 1", "```",
        "```", "plain", "```",
        "<!-- not-run: needs the hub -->", "", "```bash", "clas-graph run specs/clas_llama.yaml", "```",
        "```bash", "clas-graph validate specs/demo.yaml \\", "    specs/lens.yaml   # two files", "```",
        "  ```yaml", "  name: x", "  ```",
    ])
    blocks = parse_blocks(text, "x.md")
    assert [b.line for b in blocks] == [1, 5, 8, 13, 16, 20]
    assert [problem(b) is None for b in blocks] == [False, False, False, True, True, True]
    assert commands(blocks[4].code) == [["clas-graph", "validate", "specs/demo.yaml", "specs/lens.yaml"]]
    assert blocks[5].code == "name: x\n" and blocks[3].arg == "needs the hub"


@pytest.mark.parametrize("block", runnable(BLOCKS))
def test_block_runs(block: Block, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    if block.lang == "python":
        exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})
    elif block.lang == "yaml":
        from clas_graph import load_spec

        # Beside copies of the shipped specs, so `include: base_gemma.yaml` resolves as it does in specs/.
        for spec in (ROOT / "specs").glob("*.yaml"):
            shutil.copy(spec, tmp_path / spec.name)
        head = f"include: {ROOT / block.arg}\n" if block.marker == "fragment" else ""
        (tmp_path / "block.yaml").write_text(head + block.code, encoding="utf-8")
        load_spec(tmp_path / "block.yaml")
    else:
        from typer.testing import CliRunner

        from clas_graph.cli import app

        for argv in commands(block.code):
            result = CliRunner().invoke(app, argv[1:])
            assert result.exit_code == 0, f"{' '.join(argv)} -> {result.exit_code}\n{result.output}"


def test_docs_build_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs tools are not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs tools are not installed: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # The API reference is generated from the docstrings, not left empty.
    reference = (tmp_path / "site" / "reference" / "execution" / "index.html").read_text(encoding="utf-8")
    assert "forward_many" in reference and "sharing each batch" in reference
    # Code examples belong in the pages, where they run; a docstring's would be rendered here unchecked.
    for page in (tmp_path / "site" / "reference").rglob("*.html"):
        # (signatures are `doc-signature highlight` blocks, so they do not match)
        blocks = re.findall(r'<div class="highlight"><pre>.*?</pre>', page.read_text(encoding="utf-8"), re.S)
        assert not blocks, f"{page.relative_to(tmp_path)}: a docstring holds a code block: {blocks[0][:300]}"


README_PAGES_ELSEWHERE = {"docs/guarantees.md", "docs/security.md", "docs/install.md"}


def test_readme_is_the_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    for needed in ("make demo", "make test", "## What clas_graph guarantees", "## What a spec can do to your machine",
                   "docs/install.md"):
        assert needed in text


@pytest.mark.parametrize("target", sorted({m for f in doc_files() if f.name == "README.md"
                                           for m in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", f.read_text())}))
def test_readme_links_resolve(target):
    if target in README_PAGES_ELSEWHERE and not (ROOT / target).exists():
        pytest.skip(f"{target} is written separately and not here yet")
    assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
