"""The commands the documentation shows, read from the documents themselves.

A *documented command* is a line of a shell code block (```bash, ```sh, ```console or a block
with no language) in one of :data:`DOCUMENTS` that runs simstudy: the ``simstudy`` program
(``.venv/bin/simstudy`` too), a script of ours (``scripts/``, ``analysis/``, ``cluster/``) or
Python code that imports simstudy. Backslash continuations are joined and shell comments
dropped, so a command is compared by its tokens (``shlex``), not its spacing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the documents whose shell blocks are acceptance-tested (docs/*.md are added when present)
DOCUMENTS = ("README.md", "cluster/README.md", "analysis/SAEB_RESULTS.md")

_FENCE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
_SHELL = {"", "bash", "sh", "shell", "console", "zsh"}
_OURS = re.compile(r"(^|[\s/])simstudy(\s|$)|(^|[\s/])(scripts|analysis|cluster)/\S+\.(sh|py|sbatch|pbs)\b"
                   r"|from simstudy|import simstudy")


@dataclass(frozen=True)
class DocCommand:
    document: str   # path relative to the repository root
    line: int       # 1-based line where the command starts
    text: str       # the command, continuations joined, comment dropped

    @property
    def tokens(self) -> tuple[str, ...]:
        return tokens(self.text)

    def where(self) -> str:
        return f"{self.document}:{self.line}"


def tokens(command: str) -> tuple[str, ...]:
    """Shell words of a command without its comment (``# ...`` outside quotes)."""
    return tuple(shlex.split(command, comments=True))


def documents(root: Path = ROOT) -> list[Path]:
    found = [root / d for d in DOCUMENTS]
    docs = root / "docs"
    if docs.is_dir():
        found += sorted(docs.rglob("*.md"))
    return [p for p in found if p.is_file()]


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of every shell code block of a Markdown text."""
    out: list[tuple[int, str]] = []
    in_block, shell, pending, start = False, False, "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(raw)
        if fence:
            if not in_block:
                in_block, shell = True, fence.group(2).lower() in _SHELL
            else:
                in_block = False
            pending = ""
            continue
        if not (in_block and shell):
            continue
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical and not logical.startswith("#"):
            out.append((start, logical))
    return out


def documented_commands(root: Path = ROOT) -> list[DocCommand]:
    """Every documented command that runs simstudy, in document order."""
    found: list[DocCommand] = []
    for path in documents(root):
        rel = path.relative_to(root).as_posix()
        for number, line in shell_lines(path.read_text(encoding="utf-8")):
            words = tokens(line)
            if words and _OURS.search(" ".join(words)):
                found.append(DocCommand(rel, number, " ".join(shlex.quote(w) for w in words)))
    return found
