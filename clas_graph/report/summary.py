"""summary.md as sections: the evaluation report builds them, a sweep adds its own, and the command line prints the
findings from the same sections; nothing re-reads the rendered text."""

from __future__ import annotations

from dataclasses import dataclass, field

FINDINGS = "Findings"
"""The section of one plain sentence per condition and task, which the run also prints."""


@dataclass
class Section:
    """A `## title` and the lines under it (None: lines without a heading)."""

    title: str | None
    lines: list[str] = field(default_factory=list)

    def rendered(self) -> list[str]:
        return self.lines if self.title is None else [f"## {self.title}", *self.lines]


@dataclass
class Summary:
    """The summary's sections in order; `findings` are the plain sentences the run also prints."""

    sections: list[Section]
    findings: list[str] = field(default_factory=list)

    def insert_before(self, title: str, section: Section) -> None:
        """Put `section` before the section titled `title`."""
        index = next(i for i, existing in enumerate(self.sections) if existing.title == title)
        self.sections.insert(index, section)

    def markdown(self) -> str:
        return "\n".join(line for section in self.sections for line in section.rendered())
