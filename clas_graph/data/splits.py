"""Dev and test items of a task: the test items are what the task spec says; the dev items, which a sweep
tunes on, never overlap them.

- XNLI: dev from another split (`validation`, disjoint by construction) or, from the test's own source,
  a seeded sample of the rows the test subset does not use.
- XQuAD (one split): a seeded sample of the question ids the test subset does not use.
- Corpus tasks (retrieval, lm_loss, next_token): another slice `[offset, offset + limit)` of the same seeded
  corpus order; by default the slice right after the test slice, with the same size.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..spec.tasks import CorpusDev, XnliDev, XquadDev

TEST = "test"
DEV = "dev"
SPLITS = (TEST, DEV)


def _check(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def dev_corpus(task):
    """The corpus spec of a corpus task's dev slice (same kind and seed, another offset/limit)."""
    corpus = task.corpus
    dev = task.dev or CorpusDev()
    offset = corpus.offset + corpus.limit if dev.offset is None else dev.offset
    limit = corpus.limit if dev.limit is None else dev.limit
    if offset < corpus.offset + corpus.limit and corpus.offset < offset + limit:
        raise DataError(f"the dev slice [{offset}, {offset + limit}) overlaps the test slice "
                        f"[{corpus.offset}, {corpus.offset + corpus.limit})", where=f"tasks ({task.kind}).dev",
                        fix="move `dev.offset` past the test slice")
    return corpus.model_copy(update={"offset": offset, "limit": limit})


def task_for_split(task, split: str):
    """For corpus tasks: the task whose corpus is the split's slice (other tasks: unchanged)."""
    _check(split)
    if split == TEST or getattr(task, "corpus", None) is None:
        return task
    return task.model_copy(update={"corpus": dev_corpus(task)})


def _same_file(a: str | None, b: str | None, base_dir) -> bool:
    if a is None or b is None:
        return False
    resolve = (lambda p: (Path(base_dir) / p if base_dir is not None and not Path(p).is_absolute() else Path(p))
               .expanduser().resolve())
    return resolve(a) == resolve(b)


def xnli_items(task, language: str, split: str, base_dir=None):
    """XNLI examples of one language for `split` (test: the task's subset; dev: disjoint from it)."""
    from .tasks import load_xnli

    _check(split)
    test = load_xnli(language, split=task.split, limit=task.limit, seed=task.seed, data_files=task.data_files,
                     base_dir=base_dir, hub_id=task.hub_id)
    if split == TEST:
        return test
    dev = task.dev or XnliDev()
    own = (dev.data_files or {}).get(language)
    task_file = (task.data_files or {}).get(language)
    same_source = ((dev.data_files is None and (task.data_files is not None or dev.split == task.split))
                   or _same_file(own, task_file, base_dir))
    if same_source:  # draw from the rows the test subset does not use, in the test's id space
        return load_xnli(language, split=task.split, limit=dev.limit, seed=dev.seed, data_files=task.data_files,
                         base_dir=base_dir, hub_id=task.hub_id, exclude={e.id for e in test})
    return load_xnli(language, split=dev.split, limit=dev.limit, seed=dev.seed, data_files=dev.data_files,
                     base_dir=base_dir, hub_id=task.hub_id)


def xquad_items(task, language: str, split: str, base_dir=None):
    """XQuAD questions of one language for `split` (dev: ids the test subset does not use)."""
    from .tasks import load_xquad_qa

    _check(split)
    options = dict(split=task.split, data_files=task.data_files, base_dir=base_dir, hub_id=task.hub_id)
    test = load_xquad_qa(language, limit=task.limit, seed=task.seed, **options)
    if split == TEST:
        return test
    dev = task.dev or XquadDev()
    return load_xquad_qa(language, limit=dev.limit, seed=dev.seed, exclude={e.id for e in test}, **options)


def item_ids(task, languages: list[str], language: str, split: str, base_dir=None) -> list[str]:
    """Ids of the items a task evaluates in `language` for `split` (no model needed)."""
    if task.kind == "xnli":
        return [e.id for e in xnli_items(task, language, split, base_dir)]
    if task.kind == "xquad":
        return [e.id for e in xquad_items(task, language, split, base_dir)]
    from ..runners.stats import load_corpus

    return [s.id for s in load_corpus(task_for_split(task, split).corpus, languages, base_dir)]


def check_disjoint(task, languages: list[str], base_dir=None) -> None:
    """Raise DataError if any dev item id of the task is also a test item id (in any language)."""
    # Corpus samples are parallel (one id for all languages): one language is enough to compare ids.
    for language in languages if task.kind in ("xnli", "xquad") else languages[:1]:
        test = set(item_ids(task, languages, language, TEST, base_dir))
        shared = [i for i in item_ids(task, languages, language, DEV, base_dir) if i in test]
        if shared:
            raise DataError(f"{len(shared)} dev item(s) of {task.kind} in {language!r} are also test items "
                            f"(e.g. {shared[0]!r})", where=f"tasks ({task.kind}).dev",
                            fix="choose dev items from another split or slice")


def describe(task, split: str) -> str:
    """Where a split's items come from, in words (for metrics.json and summary.md)."""
    _check(split)
    if task.kind == "xnli":
        if split == TEST:
            return f"XNLI `{task.split}`, {task.limit or 'all'} pairs per language (seed {task.seed})"
        dev = task.dev or XnliDev()
        source = "files in dev.data_files" if dev.data_files else f"`{dev.split}`"
        same = dev.data_files is None and (task.data_files is not None or dev.split == task.split)
        return (f"XNLI {source if not same else f'`{task.split}` rows outside the test subset'}, {dev.limit} pairs "
                f"per language (seed {dev.seed})")
    if task.kind == "xquad":
        if split == TEST:
            return f"XQuAD `{task.split}`, {task.limit or 'all'} questions per language (seed {task.seed})"
        dev = task.dev or XquadDev()
        return f"XQuAD questions outside the test subset, {dev.limit} per language (seed {dev.seed})"
    corpus = task.corpus if split == TEST else dev_corpus(task)
    return (f"{corpus.kind} texts [{corpus.offset}, {corpus.offset + corpus.limit}) of the order with seed "
            f"{corpus.seed}")
