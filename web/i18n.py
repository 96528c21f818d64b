"""The languages residents and kiosks are served in, and how a request's one is chosen.

Six languages: Japanese (``ja``, the default), やさしい日本語 (``ja-easy``, easy Japanese,
always with furigana), English, simplified Chinese, Korean and Vietnamese. Messages are
written in English in the code and the templates (``_("Take a ticket")``) and translated
by Babel catalogues, ``web/locales/<code>/LC_MESSAGES/messages.po``, which are read
straight from the ``.po`` files once at start-up (no compile step); ``make messages``
extracts the messages and updates every catalogue.

A request's language is, in order: ``?lang=`` (and then remembered in the cookie
``madoguchi-lang`` for a year), the cookie, the browser's ``Accept-Language``, Japanese.
A value that is not one of ours is passed over, never an error.

Furigana: always on ``ja-easy``; on ``ja`` when asked for with ``?furigana=1`` (remembered
in the cookie ``madoguchi-furigana``; ``?furigana=0`` turns it off) or that cookie. Any
translation (and any name in the data) may give a reading for words the dictionary gets
wrong, as ``｜戸畑《とばた》``: see :mod:`madoguchi.web.furigana`.

Python code that makes text for residents or kiosks translates it in the request's language::

    _ = translator(request).gettext
    raise BadRequest(_("The office is closed today."))
    _("Counter %(n)s", n=counter)       # placeholders as in the templates
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from gettext import NullTranslations
from pathlib import Path
from typing import Any, Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from starlette.responses import Response

from . import furigana

LOCALES: Final = Path(__file__).parent / "locales"
DOMAIN: Final = "messages"
LANG_COOKIE: Final = "madoguchi-lang"
FURIGANA_COOKIE: Final = "madoguchi-furigana"
#: How long the choices are remembered: a year.
COOKIE_SECONDS: Final = 365 * 24 * 3600


@dataclass(frozen=True)
class Language:
    """A language we speak."""

    #: Our id for it: the value of ``?lang=`` and of the cookie, the catalogue's folder.
    code: str
    #: Its BCP 47 tag: ``<html lang>``, ``Content-Language``, ``hreflang``.
    tag: str
    #: Its name in itself, for the language switcher.
    name: str
    #: The Babel locale of its catalogue (plural rules).
    locale: str
    #: The suffix of the data's names in it: ``name_ja``, ``name_zh_hans``, …
    field: str
    #: Whether its pages always carry furigana.
    furigana: bool = False


LANGUAGES: Final = (
    Language("ja", "ja", "日本語", "ja", "ja"),
    # There is no registered subtag for easy Japanese: a private-use one keeps it apart
    # while everything that reads the tag still sees Japanese.
    Language("ja-easy", "ja-x-easy", "やさしい日本語", "ja", "ja_easy", furigana=True),
    Language("en", "en", "English", "en", "en"),
    Language("zh-Hans", "zh-Hans", "简体中文", "zh_Hans", "zh_hans"),
    Language("ko", "ko", "한국어", "ko", "ko"),
    Language("vi", "vi", "Tiếng Việt", "vi", "vi"),
)
BY_CODE: Final = {language.code: language for language in LANGUAGES}
DEFAULT: Final = BY_CODE["ja"]
#: The language the messages are written in (staff pages are shown in it for now).
SOURCE: Final = BY_CODE["en"]
#: A browser's language tag, lowercased, to ours: by the whole tag, else by its first subtag.
_TAGS: Final = {
    **{language.tag.lower(): language for language in LANGUAGES},
    **{language.code.lower(): language for language in LANGUAGES},
    "ja": DEFAULT,
    "en": SOURCE,
    "zh": BY_CODE["zh-Hans"],  # the only Chinese we have: closer to a Chinese reader than ja
    "ko": BY_CODE["ko"],
    "vi": BY_CODE["vi"],
}


def N_(message: str) -> str:
    """Mark ``message`` for extraction where it is defined; translate it where it is shown."""
    return message


# --- choosing the language ------------------------------------------------------------


def accepted(header: str) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (``q=0`` left out)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > 0:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(header: str) -> Language | None:
    """Our language that best fits an ``Accept-Language`` header, if any does."""
    for tag in accepted(header):
        lowered = tag.lower()
        found = _TAGS.get(lowered) or _TAGS.get(lowered.split("-")[0])
        if found is not None:
            return found
    return None


def language_of(connection: HTTPConnection) -> Language:
    """The language to answer in: ``?lang=``, the cookie, ``Accept-Language``, Japanese."""
    chosen = BY_CODE.get(connection.query_params.get("lang", ""))
    if chosen is None:
        chosen = BY_CODE.get(connection.cookies.get(LANG_COOKIE, ""))
    if chosen is None:
        chosen = negotiate(connection.headers.get("accept-language", ""))
    return chosen or DEFAULT


def furigana_of(connection: HTTPConnection, language: Language | None = None) -> bool:
    """Whether the page carries furigana: always in easy Japanese; in Japanese on request."""
    language = language or language_of(connection)
    if language.furigana:
        return True
    if language.code != "ja":
        return False
    asked = connection.query_params.get("furigana")
    if asked in ("0", "1"):
        return asked == "1"
    return connection.cookies.get(FURIGANA_COOKIE) == "1"


def remember(connection: HTTPConnection, response: Response) -> None:
    """Keep the choices made with ``?lang=`` and ``?furigana=`` in their cookies."""
    query, cookies = connection.query_params, connection.cookies
    lang, asked = query.get("lang", ""), query.get("furigana", "")
    chosen = {LANG_COOKIE: lang} if lang in BY_CODE else {}
    if asked in ("0", "1"):
        chosen[FURIGANA_COOKIE] = asked
    for name, value in chosen.items():
        if cookies.get(name) != value:
            response.set_cookie(
                name,
                value,
                max_age=COOKIE_SECONDS,
                samesite="lax",
                secure=connection.url.scheme in ("https", "wss"),
                httponly=True,
            )


@dataclass(frozen=True)
class LanguageLink:
    """One entry of the language switcher."""

    language: Language
    href: str
    current: bool


def switcher(connection: HTTPConnection, current: Language) -> list[LanguageLink]:
    """Links to this page in every language, keeping its path and the rest of its query."""
    url = URL(scope=connection.scope)
    links = []
    for language in LANGUAGES:
        target = url.include_query_params(lang=language.code)
        href = target.path + (f"?{target.query}" if target.query else "")
        links.append(LanguageLink(language, href, language == current))
    return links


# --- catalogues -------------------------------------------------------------------------


class Catalogues:
    """The translations of every language, read from the ``.po`` files once."""

    def __init__(self, translations: Mapping[str, NullTranslations]) -> None:
        self._translations = dict(translations)

    @classmethod
    def load(cls, folder: Path = LOCALES) -> Catalogues:
        """Read ``folder/<code>/LC_MESSAGES/messages.po`` for every language (fuzzy ones not)."""
        loaded: dict[str, NullTranslations] = {}
        for language in LANGUAGES:
            path = folder / language.code / "LC_MESSAGES" / f"{DOMAIN}.po"
            if not path.is_file():
                loaded[language.code] = NullTranslations()
                continue
            with path.open("rb") as po:
                catalog = read_po(po, locale=language.locale, domain=DOMAIN)
            buffer = io.BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            buffer.seek(0)
            loaded[language.code] = Translations(buffer, domain=DOMAIN)
        return cls(loaded)

    def translations(self, language: Language) -> NullTranslations:
        return self._translations.get(language.code) or NullTranslations()


def warm_up() -> None:
    """Start loading, in the background, what the first page with furigana needs."""
    furigana.warm_up()


def catalogues_of(connection: HTTPConnection) -> Catalogues:
    """The app's catalogues (read at start-up; read now if the app has none)."""
    state = connection.app.state
    catalogues: Catalogues | None = getattr(state, "catalogues", None)
    if catalogues is None:
        catalogues = state.catalogues = Catalogues.load()
    return catalogues


# --- translating --------------------------------------------------------------------------


class Translator:
    """Messages and names in one language, with or without furigana.

    :meth:`gettext` and friends give plain text, ready for Python to use anywhere (a
    JSON body, a header, a template variable). The ``raw_*`` methods serve the templates:
    they leave the ``%`` formatting to Jinja, and keep explicit readings (as annotation
    characters that the page's furigana pass turns into ruby) when the page has furigana.
    """

    def __init__(
        self, language: Language, translations: NullTranslations, *, furigana: bool = False
    ) -> None:
        self.language = language
        self.translations = translations
        self.furigana = furigana

    def _text(self, text: str) -> str:
        return furigana.annotate(text) if self.furigana else furigana.strip_readings(text)

    # For templates: Jinja's newstyle gettext formats the result itself.
    def raw_gettext(self, message: str) -> str:
        return self._text(self.translations.gettext(message))

    def raw_ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._text(self.translations.ngettext(singular, plural, n))

    def raw_pgettext(self, context: str, message: str) -> str:
        return self._text(self.translations.pgettext(context, message))

    def raw_npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return self._text(self.translations.npgettext(context, singular, plural, n))

    # For Python: plain text, formatted like the templates' (a message is always a format).
    def gettext(self, message: str, /, **variables: Any) -> str:
        return furigana.strip_readings(self.translations.gettext(message)) % variables

    def ngettext(self, singular: str, plural: str, n: int, /, **variables: Any) -> str:
        text = self.translations.ngettext(singular, plural, n)
        return furigana.strip_readings(text) % {"num": n, **variables}

    def pgettext(self, context: str, message: str, /, **variables: Any) -> str:
        return furigana.strip_readings(self.translations.pgettext(context, message)) % variables

    def name(self, obj: object) -> str:
        """The name of ``obj`` (an office, a service, a mapping) in this language, plain."""
        return furigana.strip_readings(name_in(obj, self.language))

    def raw_name(self, obj: object) -> str:
        """The name for a template: explicit readings kept when the page has furigana."""
        return self._text(name_in(obj, self.language))


def name_in(obj: object, language: Language) -> str:
    """``obj``'s ``name_<lang>`` (attribute or key); else English, then Japanese.

    Easy Japanese falls back to Japanese first: a Japanese name with furigana serves its
    reader better than an English one.
    """
    fields = [language.field, "ja", "en"] if language.furigana else [language.field, "en", "ja"]
    for field in fields:
        key = f"name_{field}"
        value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
        if isinstance(value, str) and value.strip():
            return value
    fallback = obj.get("name") if isinstance(obj, Mapping) else getattr(obj, "name", None)
    return fallback if isinstance(fallback, str) else ""


def translator(connection: HTTPConnection) -> Translator:
    """The request's translator (made once per request)."""
    cached: Translator | None = getattr(connection.state, "translator", None)
    if cached is None:
        language = language_of(connection)
        cached = Translator(
            language,
            catalogues_of(connection).translations(language),
            furigana=furigana_of(connection, language),
        )
        connection.state.translator = cached
    return cached


def source_translator() -> Translator:
    """Messages as written (English), no furigana: the staff pages' for now."""
    return Translator(SOURCE, NullTranslations())
