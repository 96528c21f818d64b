"""Languages: every message translated, the request's language chosen right, furigana safe.

The completeness test extracts the messages exactly as ``make messages`` does (babel.cfg,
Babel's default keywords, from the repository root) and fails for any message that a
catalogue lacks, leaves empty or marks fuzzy, or whose placeholders differ from the
English. The other tests drive :func:`madoguchi.web.pages.render` through a small app
of their own, so that they depend on no other page.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import ChoiceLoader, DictLoader
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from madoguchi.queue.model import Office, Service
from madoguchi.web import furigana, i18n, pages

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdifr]")
TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE]


# --- every message translated ------------------------------------------------------------


@functools.cache
def extracted() -> dict[str | tuple[str, str], set[str]]:
    """Every message of babel.cfg's files (``(singular, plural)`` for plurals) and where."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str | tuple[str, str], set[str]] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, set()).add(filename)
    return found


def catalogue(language: i18n.Language) -> Catalog:
    path = i18n.LOCALES / language.code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    with path.open("rb") as po:
        return read_po(po, locale=language.locale)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def problems_of(
    language: i18n.Language, messages: dict[str | tuple[str, str], set[str]]
) -> list[str]:
    catalog = catalogue(language)
    problems = []
    for key, files in sorted(messages.items(), key=str):
        singular, plural = (key, key) if isinstance(key, str) else key
        where = f"{singular!r} ({', '.join(sorted(files))})"
        message = catalog.get(singular)
        if message is None:
            problems.append(f"missing (run `make messages`): {where}")
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {where}")
            continue
        forms = list(message.string) if isinstance(message.string, tuple) else [message.string]
        if not all(forms):
            if language.code != i18n.SOURCE.code:
                problems.append(f"untranslated: {where}")
            continue
        for index, form in enumerate(forms):
            wanted = placeholders(singular if index == 0 and len(forms) > 1 else plural)
            if placeholders(form) != wanted:
                problems.append(f"placeholders {sorted(placeholders(form))} in {form!r}: {where}")
            try:
                form % dict.fromkeys(wanted, "x")
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"not a format ({exc}; write %% for %): {form!r}: {where}")
            if "《" in furigana.strip_readings(form) or "》" in furigana.strip_readings(form):
                problems.append(f"a reading not in ｜漢字《かんじ》 form: {form!r}: {where}")
    return problems


def test_the_extraction_finds_the_residents_messages_and_not_the_staffs() -> None:
    messages = extracted()
    files = set().union(*messages.values())
    assert "Skip to content" in messages  # web/templates/base.html
    assert "Language" in messages  # the switcher
    assert not any(
        name.startswith(("web/templates/staff/", "web/templates/admin/")) for name in files
    )


@pytest.mark.parametrize("language", [*TRANSLATED, i18n.SOURCE], ids=lambda lang: lang.code)
def test_every_message_is_translated(language: i18n.Language) -> None:
    problems = problems_of(language, extracted())
    shown = "\n".join(problems[:40])
    assert not problems, f"{len(problems)} problems in {language.code}:\n{shown}"


def test_the_check_fails_for_a_message_without_translation(tmp_path: Path) -> None:
    messages: dict[str | tuple[str, str], set[str]] = {
        "A message nobody has translated": {"web/templates/x.html"}
    }
    assert problems_of(i18n.BY_CODE["ko"], messages) == [
        "missing (run `make messages`): 'A message nobody has translated' (web/templates/x.html)"
    ]


# --- a small app on render() -------------------------------------------------------------

TEMPLATES = {
    "public/test.html": (
        '{% extends "public/base.html" %}{% import "public/_test_macros.html" as m %}'
        "{% block title %}{{ _('Skip to content') }}{% endblock %}"
        '{% block main %}<p id="skip">{{ _("Skip to content") }}</p>'
        '<p id="counter">{{ _("Counter %(n)s", n=counter) }}</p>'
        '<p id="macro">{{ m.skip() }}</p>'
        '<p id="name">{{ name_of(service) }}</p>'
        '<p id="office" title="{{ name_of(office) }}">{{ name_of(office) }}</p>'
        '<p id="input">{{ text }}</p>'
        '<p id="filtered">{{ text | furigana }}</p>'
        '<p id="plural">{% trans count=counter - 2 %}{{ count }} person waits'
        "{% pluralize %}{{ count }} people wait{% endtrans %}</p>{% endblock %}"
    ),
    "public/_test_macros.html": "{% macro skip() %}{{ _('Skip to content') }}{% endmacro %}",
    "staff/test.html": (
        '{% extends "base.html" %}{% block main %}<p id="skip">{{ _("Skip to content") }}</p>'
        "{% endblock %}"
    ),
}
SERVICE = Service("care", "C", "介護", "Long-term care", name_ko="장기 요양")
OFFICE = Office("tobata", "戸畑《とばた》区役所", "Tobata Ward Office")


def translations_of(
    language: i18n.Language, entries: dict[str | tuple[str, str], str | tuple[str, ...]]
) -> Translations:
    catalog = Catalog(locale=language.locale)
    for msgid, msgstr in entries.items():
        catalog.add(msgid, msgstr)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


#: Test catalogues (the real ones change as the pages do).
CATALOGUES = i18n.Catalogues(
    {
        "ja": translations_of(
            i18n.BY_CODE["ja"],
            {
                "Skip to content": "本文へ移動",
                "Counter %(n)s": "%(n)s番｜窓口《まどぐち》",
                ("%(count)s person waits", "%(count)s people wait"): ("%(count)s人待ち",),
            },
        ),
        "ja-easy": translations_of(
            i18n.BY_CODE["ja-easy"],
            {"Skip to content": "なかみへ いく", "Counter %(n)s": "%(n)s番の 窓口"},
        ),
        "ko": translations_of(i18n.BY_CODE["ko"], {"Skip to content": "본문으로 건너뛰기"}),
    }
)


async def page(request: Request) -> Response:
    template = request.path_params["template"]
    return pages.render(
        request,
        f"{template}/test.html",
        {"counter": 3, "service": SERVICE, "office": OFFICE, "text": "<b>漢字</b> & 戸畑"},
    )


async def python_message(request: Request) -> Response:
    _ = i18n.translator(request).gettext
    return JSONResponse({"message": _("Counter %(n)s", n=7)})


@pytest.fixture
async def web() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/page/{template}", page), Route("/message", python_message)])
    env = pages.environment()
    env.loader = ChoiceLoader([DictLoader(TEMPLATES), env.loader])  # type: ignore[list-item]
    app.state.templates = env
    app.state.catalogues = CATALOGUES
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def html_lang(response: httpx.Response) -> str:
    found = re.search(r'<html lang="([^"]+)"', response.text)
    assert found, response.text[:200]
    return found.group(1)


def text_of(response: httpx.Response, id: str) -> str:
    found = re.search(f'<p id="{id}"[^>]*>(.*?)</p>', response.text, re.S)
    assert found, response.text
    return found.group(1)


async def get(web: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    response = await web.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert html_lang(response) == response.headers["content-language"]
    return response


# --- choosing the language -------------------------------------------------------------


async def test_without_any_choice_the_page_is_japanese(web: httpx.AsyncClient) -> None:
    response = await get(web, "/page/public")
    assert html_lang(response) == "ja"
    assert text_of(response, "skip") == "本文へ移動"
    assert "set-cookie" not in response.headers


async def test_lang_in_the_query_chooses_and_is_remembered(web: httpx.AsyncClient) -> None:
    response = await get(web, "/page/public?lang=ko", **{"accept-language": "en"})
    assert html_lang(response) == "ko"
    assert text_of(response, "skip") == "본문으로 건너뛰기"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("madoguchi-lang=ko;")
    assert "max-age=31536000" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    # The browser sends it back: the choice holds on the next page, over Accept-Language.
    again = await get(web, "/page/public", **{"accept-language": "en"})
    assert html_lang(again) == "ko"
    assert "set-cookie" not in again.headers


async def test_the_query_wins_over_the_cookie(web: httpx.AsyncClient) -> None:
    web.cookies.set(i18n.LANG_COOKIE, "ko")
    response = await get(web, "/page/public?lang=ja-easy")
    assert html_lang(response) == "ja-x-easy"
    assert "madoguchi-lang=ja-easy" in response.headers["set-cookie"]


async def test_the_cookie_wins_over_accept_language(web: httpx.AsyncClient) -> None:
    web.cookies.set(i18n.LANG_COOKIE, "vi")
    response = await get(web, "/page/public", **{"accept-language": "ko"})
    assert html_lang(response) == "vi"
    assert text_of(response, "skip") == "Skip to content"  # no Vietnamese in the test catalogue


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("fr-FR, vi;q=0.5, en;q=0.4", "vi"),
        ("en;q=0.3, zh-CN;q=0.8", "zh-Hans"),
        ("zh-Hant-TW", "zh-Hans"),
        ("en-GB", "en"),
        ("ja-JP", "ja"),
        ("ko;q=0, en;q=0.1", "en"),
    ],
)
async def test_accept_language_chooses(web: httpx.AsyncClient, header: str, tag: str) -> None:
    response = await get(web, "/page/public", **{"accept-language": header})
    assert html_lang(response) == tag
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("url", "cookie", "header"),
    [
        ("/page/public?lang=xx", "", ""),
        ("/page/public?lang=", "", ""),
        ("/page/public?lang=%3Cscript%3E", "", ""),
        ("/page/public", "klingon", ""),
        ("/page/public", "", "fr-FR, de;q=0.9"),
        ("/page/public", "", ";;q=,,*;q=abc,"),
        ("/page/public?lang=EN&furigana=yes", "", "x" * 5000),
    ],
)
async def test_an_unknown_language_falls_back_to_japanese(
    web: httpx.AsyncClient, url: str, cookie: str, header: str
) -> None:
    if cookie:
        web.cookies.set(i18n.LANG_COOKIE, cookie)
    response = await get(web, url, **({"accept-language": header} if header else {}))
    assert html_lang(response) == "ja"
    assert "set-cookie" not in response.headers


async def test_python_code_translates_in_the_requests_language(web: httpx.AsyncClient) -> None:
    response = await web.get("/message?lang=ja")
    # Plain text for Python: the explicit reading is reduced to its base.
    assert response.json() == {"message": "7番窓口"}
    assert (await web.get("/message?lang=en")).json() == {"message": "Counter 7"}


async def test_staff_pages_stay_english(web: httpx.AsyncClient) -> None:
    response = await get(web, "/page/staff?lang=ja-easy", **{"accept-language": "ja"})
    assert html_lang(response) == "en"
    assert text_of(response, "skip") == "Skip to content"
    assert "<ruby>" not in response.text
    assert "set-cookie" not in response.headers


# --- the switcher and names -----------------------------------------------------------------


async def test_the_switcher_links_every_language_keeping_the_page(web: httpx.AsyncClient) -> None:
    response = await get(web, "/page/public?office=tobata&lang=en")
    nav = re.search(
        r'<nav class="languages" aria-label="Language">(.*?)</nav>', response.text, re.S
    )
    assert nav, response.text
    links = re.findall(r'<a href="([^"]+)" lang="([^"]+)" hreflang="[^"]+"([^>]*)>', nav.group(1))
    assert [(href, lang) for href, lang, _ in links] == [
        (f"/page/public?office=tobata&amp;lang={lang.code}", lang.tag) for lang in i18n.LANGUAGES
    ]
    current = [lang for _, lang, rest in links if 'aria-current="true"' in rest]
    assert current == ["en"]
    for language in i18n.LANGUAGES:
        assert f">{language.name}</a>" in nav.group(1)


@pytest.mark.parametrize(
    ("lang", "service", "office"),
    [
        ("ko", "장기 요양", "Tobata Ward Office"),  # given in Korean; the office falls back
        ("vi", "Long-term care", "Tobata Ward Office"),  # English before Japanese
        ("en", "Long-term care", "Tobata Ward Office"),
        ("ja", "介護", "戸畑区役所"),  # the explicit reading is not shown without furigana
    ],
)
async def test_names_come_in_the_pages_language(
    web: httpx.AsyncClient, lang: str, service: str, office: str
) -> None:
    response = await get(web, f"/page/public?lang={lang}")
    assert text_of(response, "name") == service
    assert text_of(response, "office") == office


def test_name_of_reads_mappings_and_falls_back() -> None:
    easy = i18n.BY_CODE["ja-easy"]
    assert i18n.name_in({"name_ja": "介護", "name_en": "Care"}, easy) == "介護"
    assert i18n.name_in({"name_ja": "介護", "name_en": "Care"}, i18n.BY_CODE["vi"]) == "Care"
    assert (
        i18n.name_in({"name_ja": "介護", "name_zh_hans": "护理"}, i18n.BY_CODE["zh-Hans"]) == "护理"
    )
    assert i18n.name_in({"name_ja": "介護", "name_en": " "}, i18n.BY_CODE["ko"]) == "介護"
    assert i18n.name_in(object(), i18n.BY_CODE["ko"]) == ""


# --- furigana ------------------------------------------------------------------------------------


def test_ruby_escapes_first_and_marks_up_after() -> None:
    result = furigana.ruby('<img src=x onerror="alert(1)">窓口へ & <rt>')
    assert isinstance(result, Markup)
    assert result == (
        "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
        "<ruby>窓口<rt>まどぐち</rt></ruby>へ &amp; &lt;rt&gt;"
    )


def test_ruby_keeps_okurigana_outside_and_reads_counters() -> None:
    assert furigana.ruby("待ち時間は約25分、3人") == (
        "<ruby>待<rt>ま</rt></ruby>ち<ruby>時間<rt>じかん</rt></ruby>は"
        "<ruby>約<rt>やく</rt></ruby>25<ruby>分<rt>ふん</rt></ruby>、3<ruby>人<rt>にん</rt></ruby>"
    )
    assert furigana.ruby("1人、10分") == (
        "1<ruby>人<rt>ひとり</rt></ruby>、10<ruby>分<rt>ぷん</rt></ruby>"
    )
    # A person on their own is ひと; the dictionary alone says にん.
    assert furigana.ruby("係の人に 聞いて") == (
        "<ruby>係<rt>かかり</rt></ruby>の<ruby>人<rt>ひと</rt></ruby>に "
        "<ruby>聞<rt>き</rt></ruby>いて"
    )
    assert furigana.ruby("まって いる 人、日本人、二人") == (
        "まって いる <ruby>人<rt>ひと</rt></ruby>、<ruby>日本人<rt>にほんじん</rt></ruby>、"
        "<ruby>二人<rt>ふたり</rt></ruby>"
    )


def test_explicit_readings_win_in_either_notation() -> None:
    assert furigana.ruby("｜八幡《やはた》西区") == (
        "<ruby>八幡<rt>やはた</rt></ruby><ruby>西区<rt>にしく</rt></ruby>"
    )
    assert furigana.ruby("御用《ごよう》です") == "<ruby>御用<rt>ごよう</rt></ruby>です"
    assert furigana.strip_readings("｜八幡《やはた》西区と御用《ごよう》") == "八幡西区と御用"
    # A reading cannot smuggle markup in.
    assert furigana.ruby("｜<b>《<i>》") == "<ruby>&lt;b&gt;<rt>&lt;i&gt;</rt></ruby>"


def test_a_page_gets_ruby_only_where_ruby_may_go() -> None:
    page = (
        '<html lang="ja"><head><title>窓口</title><script>let a = "<漢字>";</script></head>'
        '<body><p title="\ufff9窓口\ufffaまどぐち\ufffb">番号 &lt;b&gt;</p>'
        '<span lang="en">中文 <b>漢字</b></span><select><option>漢字</option></select>'
        '<p data-furigana="off">漢字</p><ruby>漢字<rt>かんじ</rt></ruby></body></html>'
    )
    assert furigana.add_furigana(page) == (
        '<html lang="ja"><head><title>窓口</title><script>let a = "<漢字>";</script></head>'
        '<body><p title="窓口"><ruby>番号<rt>ばんごう</rt></ruby> &lt;b&gt;</p>'
        '<span lang="en">中文 <b>漢字</b></span><select><option>漢字</option></select>'
        '<p data-furigana="off">漢字</p><ruby>漢字<rt>かんじ</rt></ruby></body></html>'
    )


async def test_easy_japanese_always_has_furigana(web: httpx.AsyncClient) -> None:
    response = await get(web, "/page/public?lang=ja-easy")
    assert text_of(response, "skip") == "なかみへ いく"
    assert (
        text_of(response, "counter")
        == "3<ruby>番<rt>ばん</rt></ruby>の <ruby>窓口<rt>まどぐち</rt></ruby>"
    )
    assert text_of(response, "macro") == "なかみへ いく"  # a macro imported without context
    assert text_of(response, "name") == "<ruby>介護<rt>かいご</rt></ruby>"
    assert text_of(response, "office") == (
        "<ruby>戸畑<rt>とばた</rt></ruby><ruby>区役所<rt>くやくしょ</rt></ruby>"
    )
    assert 'title="戸畑区役所"' in response.text  # no ruby, nor notation, in an attribute
    # HTML in the data stays text.
    assert text_of(response, "input") == (
        "&lt;b&gt;<ruby>漢字<rt>かんじ</rt></ruby>&lt;/b&gt; &amp; <ruby>戸畑<rt>とばた</rt></ruby>"
    )
    assert "<b>" not in response.text
    # The switcher's other languages get no Japanese readings.
    assert '<a href="/page/public?lang=zh-Hans" lang="zh-Hans" hreflang="zh-Hans">简体中文</a>' in (
        response.text
    )


async def test_japanese_gets_furigana_on_request(web: httpx.AsyncClient) -> None:
    plain = await get(web, "/page/public?lang=ja")
    assert "<ruby>" not in plain.text
    assert text_of(plain, "counter") == "3番窓口"
    assert text_of(plain, "filtered") == "&lt;b&gt;漢字&lt;/b&gt; &amp; 戸畑"
    response = await get(web, "/page/public?furigana=1")
    assert (
        text_of(response, "counter")
        == "3<ruby>番<rt>ばん</rt></ruby><ruby>窓口<rt>まどぐち</rt></ruby>"
    )
    assert "madoguchi-furigana=1" in response.headers["set-cookie"]
    remembered = await get(web, "/page/public")
    assert "<ruby>" in remembered.text
    off = await get(web, "/page/public?furigana=0")
    assert "<ruby>" not in off.text
    assert "madoguchi-furigana=0" in off.headers["set-cookie"]


async def test_the_furigana_cookie_only_touches_japanese(web: httpx.AsyncClient) -> None:
    web.cookies.set(i18n.FURIGANA_COOKIE, "1")
    assert "<ruby>" in (await get(web, "/page/public")).text
    assert "<ruby>" not in (await get(web, "/page/public?lang=en")).text


async def test_a_caller_may_fix_the_language(web: httpx.AsyncClient) -> None:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"lang=en",
            "headers": [],
            "app": Starlette(),
        }
    )
    request.app.state.templates = pages.environment()
    request.app.state.catalogues = CATALOGUES
    context: dict[str, Any] = {"lang": "ja", "furigana": True}
    text, translator = pages.render_string(request, "public/base.html", context)
    assert translator.language.code == "ja"
    assert translator.furigana
    assert '<html lang="ja">' in text
    assert "<ruby>" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("/page/public?lang=en", "1 person waits"),
        ("/page/public?lang=ja", "1人待ち"),
        (
            "/page/public?lang=ja&furigana=1",
            "1<ruby>人<rt>ひとり</rt></ruby><ruby>待<rt>ま</rt></ruby>ち",
        ),
    ],
)
async def test_plurals_in_trans_blocks(web: httpx.AsyncClient, url: str, shown: str) -> None:
    assert text_of(await get(web, url), "plural") == shown


def test_elements_closed_without_end_tags_end_their_exception() -> None:
    page = "<ul><li lang=en>漢字<li>番号</ul><select><option>漢字<option>漢字</select>番号"
    assert furigana.add_furigana(page) == (
        "<ul><li lang=en>漢字<li><ruby>番号<rt>ばんごう</rt></ruby></ul>"
        "<select><option>漢字<option>漢字</select><ruby>番号<rt>ばんごう</rt></ruby>"
    )
