"""Countries for the ``country`` question type: ISO 3166-1 alpha-2 codes.

Names come from pycountry (the Debian iso-codes data and its translations), so
the Russian and English names are those a kept library maintains, not ours.
"""

from __future__ import annotations

import gettext
from functools import cache

import pycountry


@cache
def _translation(language: str) -> gettext.NullTranslations:
    return gettext.translation(
        "iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True
    )


@cache
def country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code.

    >>> "GE" in country_codes(), "SU" in country_codes()
    (True, False)
    """
    return frozenset(c.alpha_2 for c in pycountry.countries)


@cache
def country_name(code: str, language: str = "en") -> str:
    """The country's common name in ``language`` (``ru``, ``en``, ...).

    >>> country_name("TR", "ru"), country_name("GE", "en")
    ('Турция', 'Georgia')
    """
    country = pycountry.countries.get(alpha_2=code.upper())
    if country is None:
        raise KeyError(code)
    english = getattr(country, "common_name", None) or country.name
    if language == "en":
        return english
    # Translations are keyed by the official short name, not the common one.
    return _translation(language).gettext(country.name)


@cache
def country_lookup() -> dict[str, str]:
    """Map names (English, Russian, official, alpha-3, any case) to alpha-2 codes.

    Used to read files that hold country names instead of codes.

    >>> country_lookup()["грузия"], country_lookup()["tur"]
    ('GE', 'TR')
    """
    out: dict[str, str] = {}
    for c in pycountry.countries:
        names = {c.alpha_2, c.alpha_3, c.name, getattr(c, "common_name", c.name)}
        names.add(getattr(c, "official_name", c.name))
        names.add(_translation("ru").gettext(c.name))
        for name in names:
            out.setdefault(name.casefold(), c.alpha_2)
    return out


#: Everyday names pycountry lacks (it has "Türkiye", "Russian Federation",
#: "Moldova, Republic of"...), each unambiguous. Names that are not one
#: country ("Korea", "England", "Kosovo", which has no ISO code) are left out
#: on purpose: a respondent's "Korea" must be a problem, not a guess.
COUNTRY_ALIASES = {
    "turkey": "TR",
    "russia": "RU",
    "uae": "AE",
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "holland": "NL",
    "macedonia": "MK",
    "south korea": "KR",
    "россия": "RU",
    "рф": "RU",
    "сша": "US",
    "соединенные штаты америки": "US",
    "оаэ": "AE",
    "объединенные арабские эмираты": "AE",
    "великобритания": "GB",
    "молдова": "MD",
    "молдавия": "MD",
    "южная корея": "KR",
    "кыргызстан": "KG",
    "белоруссия": "BY",
    "тайланд": "TH",
    "голландия": "NL",
    "македония": "MK",
}


def _country_key(text: str) -> str:
    # "Объединённые" and "Объединенные" are the same word; ё is often typed as е.
    return " ".join(text.split()).casefold().replace("ё", "е")


@cache
def _countries() -> dict[str, str]:
    table = {_country_key(name): code for name, code in country_lookup().items()}
    for name, code in COUNTRY_ALIASES.items():
        table.setdefault(_country_key(name), code)
    return table


def country_code(text: str) -> str | None:
    """ISO alpha-2 code for a code or a name in English or Russian; None if unknown.

    >>> country_code("ge"), country_code("TUR"), country_code("Грузия"), country_code("Turkey")
    ('GE', 'TR', 'GE', 'TR')
    >>> country_code("Россия"), country_code("Объединённые Арабские Эмираты"), country_code("Korea")
    ('RU', 'AE', None)
    """
    return _countries().get(_country_key(text))
