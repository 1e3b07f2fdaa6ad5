"""Language codes: ISO 639-1 (what the tasks and the tables use) to the codes models expect.

mBART-50 marks a sequence's language with a token such as ``de_DE``; NLLB-200 (M2M100
architecture) with a token such as ``deu_Latn``. BERT and XLM-R use no language token.
The tables cover the languages of XGLUE and of the mini corpus; mBART-50 has no Bulgarian
or Greek, so those map to ``None`` there. XGLUE evaluates POS and XNLI in both, and so did the
paper for mBART: ``input_language_code`` marks such a text with the fine-tuning language's code
(English, ``en_XX``), the token the model saw during fine-tuning, and says so.
"""

from __future__ import annotations

from mtnb.core.errors import MtnbError

MBART50 = {
    "ar": "ar_AR", "de": "de_DE", "en": "en_XX", "es": "es_XX", "fr": "fr_XX", "hi": "hi_IN",
    "it": "it_IT", "nl": "nl_XX", "pl": "pl_PL", "pt": "pt_XX", "ru": "ru_RU", "sw": "sw_KE",
    "th": "th_TH", "tr": "tr_TR", "ur": "ur_PK", "vi": "vi_VN", "zh": "zh_CN",
    "bg": None, "el": None,
}

NLLB = {
    "ar": "arb_Arab", "bg": "bul_Cyrl", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn",
    "es": "spa_Latn", "fr": "fra_Latn", "hi": "hin_Deva", "it": "ita_Latn", "nl": "nld_Latn",
    "pl": "pol_Latn", "pt": "por_Latn", "ru": "rus_Cyrl", "sw": "swh_Latn", "th": "tha_Thai",
    "tr": "tur_Latn", "ur": "urd_Arab", "vi": "vie_Latn", "zh": "zho_Hans",
}

SCHEMES = {"none": None, "mbart50": MBART50, "nllb": NLLB}


def language_code(lang: str, scheme: str) -> str | None:
    """The token that names ISO language ``lang`` under ``scheme`` (none, mbart50, nllb).

    Returns None for scheme ``none``. Raises MtnbError when the scheme lacks the language.
    """
    if scheme not in SCHEMES:
        raise MtnbError(f"unknown language-code scheme {scheme!r}: use one of {sorted(SCHEMES)}")
    table = SCHEMES[scheme]
    if table is None:
        return None
    code = table.get(lang)
    if code is None:
        raise MtnbError(f"language {lang!r} has no {scheme} code: choose another language or model")
    return code


FALLBACK = "en"   # the fine-tuning language: its code marks texts in a language the scheme lacks


def input_language_code(lang: str, scheme: str) -> tuple[str | None, str | None]:
    """(the code to mark a text in ``lang`` with, a note or None): ``language_code``'s code, or
    for a language the scheme lacks (mBART-50: bg, el) the fine-tuning language's code, with a
    note saying so."""
    if scheme in SCHEMES and SCHEMES[scheme] is not None and SCHEMES[scheme].get(lang) is None:
        code = language_code(FALLBACK, scheme)
        return code, f"{lang}: {scheme} has no code for it; its inputs are marked {code}, the fine-tuning language's"
    return language_code(lang, scheme), None
