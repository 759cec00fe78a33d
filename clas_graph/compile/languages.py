"""Task languages the statistics did not see: what per-language ops do with them.

A plan accepts every row language of the spec (`spec.all_languages`: the statistics' languages, then task
languages beyond them). Language-independent ops (CLAS's M_shared/M_spec, scale, ablate, a fixed vector)
act on such rows like on any other, per their row rule. A per-language table (int_mu's means and neurons, a
per-row-language DiffMean) has no entry for a language without statistics: if the op's row rule selects
such a language, compiling fails naming it and the fixes; rows it does not select get an all-zero entry
that is never used (the row mask skips them).
"""

from __future__ import annotations

from ..errors import CompileError


def cover_languages(spec, ops: list, languages: tuple[str, ...]) -> list:
    """Pad per-language tables from the statistics' languages to `languages`; refuse ops that would need
    statistics in a language they do not have."""
    extra = languages[len(spec.languages):]
    if not extra:
        return ops
    out = []
    for op in ops:
        if not getattr(op, "per_language", False):
            out.append(op)
            continue
        for language in extra:
            if op.rows.applies(language):
                raise _unseen(spec, op, language)
        out.append(op.padded(len(extra)))
    return out


def _unseen(spec, op, language: str) -> CompileError:
    index = next(i for i, iv in enumerate(spec.interventions) if iv.id == op.intervention)
    task = next(i for i, t in enumerate(spec.tasks) if language in spec.task_languages(t))
    stats_languages = ", ".join(spec.languages)
    return CompileError(
        f"'{op.intervention}' ({op.kind}) uses each row language's own statistics, but tasks[{task}] evaluates "
        f"'{language}', which the statistics did not see (their languages: {stats_languages})",
        where=f"{spec.place(f'interventions[{index}]')}: interventions[{index}]",
        fix=f"drop '{language}' from tasks[{task}].languages; or limit the intervention to languages with "
            f"statistics (`rows: {{languages: [...]}}`; other rows stay unmodified and show a delta of 0); "
            f"or add '{language}' to `languages` with a statistics corpus that has it",
    )
