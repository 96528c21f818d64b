"""Furigana: readings in hiragana over the kanji of Japanese text, as HTML ``<ruby>``.

やさしい日本語 pages always carry furigana, and a kiosk can ask for them on Japanese
pages. Readings come from pykakasi's dictionary, with three corrections on top:

- **Explicit readings** in the text win. Catalogues (and names in the data) may give one
  in the notation of Japanese e-texts (青空文庫): ``｜戸畑《とばた》`` — a bar (full-width
  ``｜`` or ASCII ``|``) before the base and the reading in ``《》`` after it; without the
  bar the base is the run of kanji right before ``《``: ``戸畑《とばた》区役所``.
  Pages without furigana show only the base.
- **Counters after a number** are read as counters: ``3分`` さんぷん's ``ぷん``, ``2人``
  ``ふたり``, ``8時`` ``じ`` (a dictionary reads them as words: 分か(る), 人, 時(とき)).
- **Words the dictionary gets wrong** (place names above all) have a reading in
  :data:`READINGS`.

While a page is rendered, an explicit reading travels inside the text as Unicode's
interlinear annotation characters (U+FFF9 base U+FFFA reading U+FFFB):
:func:`annotate` turns the notation into them, :func:`add_furigana` turns them (and
pykakasi's readings) into ruby in the page's text, and strips them wherever ruby cannot
go (attributes, ``<title>``, scripts), so nothing of the notation ever shows.

Everything is escaped first and marked up after: the result of :func:`ruby` is safe to
insert into HTML whatever the input was.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from html import escape
from html.parser import HTMLParser
from typing import Any, Final

import pykakasi
from markupsafe import Markup

#: Kanji, and the marks that stand for kanji (々 repeats one, ヶ is the small 箇).
KANJI: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005\u3006\u30f5\u30f6"
_HAS_KANJI = re.compile(f"[{KANJI}]")
_KANJI_RUN = re.compile(f"[{KANJI}]+")
#: Runs of Japanese script: what the dictionary is given (it mangles anything else).
_JAPANESE = re.compile(f"[{KANJI}\u3041-\u309f\u30a0-\u30ff\uff66-\uff9f]+")

#: The notation of explicit readings: ``｜base《reading》`` or ``kanji《reading》``.
NOTATION: Final = re.compile(f"(?:[｜|]([^｜|《》\\n]+)|([{KANJI}]+))《([^《》\\n]+)》")
ANCHOR, SEPARATOR, TERMINATOR = "\ufff9", "\ufffa", "\ufffb"
_ANNOTATION = re.compile("\ufff9([^\ufff9-\ufffb]*)\ufffa([^\ufff9-\ufffb]*)\ufffb")
# The same, as json.dumps writes it (a string handed to a script through ``tojson``).
_ANNOTATION_JSON = re.compile(
    r"\\u[fF]{3}9((?:(?!\\u[fF]{3}[9aAbB]).)*)\\u[fF]{3}[aA](?:(?!\\u[fF]{3}[9aAbB]).)*\\u[fF]{3}[bB]"
)

#: Readings the dictionary gets wrong, found before it is asked.
READINGS: Final = {
    "戸畑": "とばた",
    "番号札": "ばんごうふだ",
    "番号": "ばんごう",
    "順番": "じゅんばん",
    "番": "ばん",
    "受付": "うけつけ",
    "窓口": "まどぐち",
    "市民センター": "しみんせんたー",
    "出張所": "しゅっちょうじょ",
    "何分": "なんぷん",
    "何人": "なんにん",
    "何番": "なんばん",
}
_READINGS = re.compile("|".join(sorted(map(re.escape, READINGS), key=len, reverse=True)))

_COUNTER_READINGS: Final = {
    "時間": "じかん",
    "週間": "しゅうかん",
    "か月": "かげつ",
    "ヶ月": "かげつ",
    "番目": "ばんめ",
    "時": "じ",
    "番": "ばん",
    "歳": "さい",
    "円": "えん",
    "月": "がつ",
    "件": "けん",
    "回": "かい",
    "枚": "まい",
    "名": "めい",
    "秒": "びょう",
    "年": "ねん",
    "日": "にち",
    "人": "にん",
    "分": "ふん",
    "階": "かい",
}
_COUNTER = re.compile("|".join(sorted(map(re.escape, _COUNTER_READINGS), key=len, reverse=True)))
_NUMBER_END = re.compile(r"[0-9０-９]+$")
_DAYS: Final = {
    1: "ついたち",
    2: "ふつか",
    3: "みっか",
    4: "よっか",
    5: "いつか",
    6: "むいか",
    7: "なのか",
    8: "ようか",
    9: "ここのか",
    10: "とおか",
    14: "じゅうよっか",
    20: "はつか",
    24: "にじゅうよっか",
}


def annotate(text: str) -> str:
    """``text`` with each explicit reading turned into interlinear annotation characters."""
    return NOTATION.sub(lambda m: f"{ANCHOR}{m[1] or m[2]}{SEPARATOR}{m[3]}{TERMINATOR}", text)


def strip_readings(text: str) -> str:
    """``text`` with the explicit readings taken out, in either form: only the base is left."""
    return _ANNOTATION.sub(r"\1", NOTATION.sub(lambda m: m[1] or m[2], text))


def plain(text: str) -> str:
    """``text`` (or a page) with interlinear annotations reduced to their base."""
    return _ANNOTATION_JSON.sub(r"\1", _ANNOTATION.sub(r"\1", text))


_loading = threading.Lock()


@functools.cache
def _kakasi() -> Any:
    with _loading:  # one load, even when the warm-up thread and a page ask at once
        return _load()


@functools.cache
def _load() -> Any:
    return pykakasi.kakasi()  # type: ignore[no-untyped-call]


def warm_up() -> None:
    """Load the dictionary in a thread of its own, now, rather than on the first page.

    It takes from half a second to a few seconds (and about 100 MiB): paid by the first
    page with furigana, it would stall every request of the process meanwhile.
    """
    threading.Thread(target=_kakasi, name="furigana-dictionary", daemon=True).start()


def _hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in text)


def _ruby(base: str, reading: str) -> str:
    return f"<ruby>{escape(base)}<rt>{escape(reading)}</rt></ruby>"


def _align(word: str, reading: str) -> Iterator[tuple[str, str | None]]:
    """Pair the kanji runs of ``word`` with their part of ``reading`` (kana stays bare)."""
    runs = [(m.group(), bool(m[1])) for m in re.finditer(f"([{KANJI}]+)|[^{KANJI}]+", word)]
    pattern = "".join("(.+?)" if kanji else f"({re.escape(_hiragana(run))})" for run, kanji in runs)
    match = re.fullmatch(pattern, reading) if reading else None
    if match is None:
        yield word, reading or None
        return
    for (run, kanji), part in zip(runs, match.groups(), strict=True):
        yield (run, part) if kanji else (run, None)


def _counter(word: str, number: str) -> str:
    reading = _COUNTER_READINGS[word]
    value = int(number) if number.isascii() else int(number.translate(_FULLWIDTH))
    last = value % 10
    if word == "人" and value in (1, 2):
        return "ひとり" if value == 1 else "ふたり"
    if word == "日":
        return _DAYS.get(value, reading)
    if word == "分" and (last in (1, 3, 4, 6, 8, 0)):
        return "ぷん"
    if word == "階" and last == 3:
        return "がい"
    return reading


_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


@functools.lru_cache(maxsize=8192)
def _run(text: str, number: str) -> str:
    """Ruby markup of a run of Japanese script after ``number`` (digits, or nothing).

    Pages repeat the same names and phrases, and the dictionary is slow (about a
    millisecond a phrase): each run is read once.
    """
    return "".join(_words(text, number))


def _words(text: str, number: str) -> Iterator[str]:
    if number:
        counter = _COUNTER.match(text)
        if counter:
            word = counter.group()
            yield _ruby(word, _counter(word, number))
            text = text[counter.end() :]
    position = 0
    for found in _READINGS.finditer(text):
        yield from _dictionary(text[position : found.start()])
        yield _ruby(found.group(), READINGS[found.group()])
        position = found.end()
    yield from _dictionary(text[position:])


def _dictionary(text: str) -> Iterator[str]:
    if not _HAS_KANJI.search(text):
        yield escape(text)
        return
    items = _kakasi().convert(text)
    if "".join(item["orig"] for item in items) != text:
        yield escape(text)  # the dictionary lost something: better no reading than a wrong text
        return
    for item in items:
        # On its own, 人 is a person, ひと (the dictionary says にん; a count after a number,
        # 3人, is read by _words before the dictionary is asked).
        hira = "ひと" if item["orig"] == "人" else item["hira"]
        for part, reading in _align(item["orig"], hira):
            if reading is None or not _HAS_KANJI.search(part):
                yield escape(part)
            else:
                yield _ruby(part, reading)


def _automatic(text: str) -> Iterator[str]:
    position = 0
    for run in _JAPANESE.finditer(text):
        yield escape(text[position : run.start()])
        number = _NUMBER_END.search(text, 0, run.start())
        yield _run(run.group(), number.group() if number else "")
        position = run.end()
    yield escape(text[position:])


def ruby(text: str) -> Markup:
    """``text`` escaped, with furigana over its kanji: ``<ruby>漢字<rt>かんじ</rt></ruby>``.

    Explicit readings (either notation, see the module's docstring) win over the dictionary.
    """
    text = annotate(text)
    out: list[str] = []
    position = 0
    for found in _ANNOTATION.finditer(text):
        out.extend(_automatic(text[position : found.start()]))
        out.append(_ruby(found[1], found[2]))
        position = found.end()
    out.extend(_automatic(text[position:]))
    return Markup("".join(out))  # noqa: S704 - every piece of the text was escaped above


#: Elements whose text gets no ruby: raw text, text-only content, code, and ruby itself.
_NO_RUBY: Final = frozenset(
    {"script", "style", "title", "textarea", "option", "svg", "math", "template"}
    | {"ruby", "rt", "rp", "code", "kbd", "samp", "var"}
)
_VOID: Final = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"}
    | {"param", "source", "track", "wbr"}
)


#: Elements that a sibling of the same kind closes without an end tag (``<li>a<li>b``).
_SELF_CLOSING_SIBLINGS: Final = frozenset({"li", "option", "p", "dt", "dd", "tr", "td", "th"})


class _Page(HTMLParser):
    """Re-writes a page with ruby over the kanji of its Japanese text nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        #: The open elements, each with whether its text gets no ruby.
        self.open: list[tuple[str, bool]] = []

    @property
    def skipping(self) -> bool:
        return bool(self.open) and self.open[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self.get_starttag_text() or "")
        if tag in _VOID:
            return
        if tag in _SELF_CLOSING_SIBLINGS and self.open and self.open[-1][0] == tag:
            self.open.pop()
        values = dict(attrs)
        lang = (values.get("lang") or "ja").lower()
        skip = (
            self.skipping
            or tag in _NO_RUBY
            or not lang.startswith("ja")
            or values.get("data-furigana") == "off"
        )
        self.open.append((tag, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")
        # An end tag closes whatever was left open inside its element.
        if any(name == tag for name, _ in self.open):
            while self.open.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.cdata_elem is not None:
            self.out.append(data)  # script or style: raw text, as written
        elif self.skipping:
            self.out.append(escape(data, quote=False))
        else:
            self.out.append(ruby(data))

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


def add_furigana(page: str) -> str:
    """The HTML ``page`` with furigana over the kanji of its Japanese text.

    Text in another language (``lang`` not Japanese), inside ``data-furigana="off"``, or
    where ruby cannot go (attributes, titles, scripts, form options, SVG) is left alone,
    and explicit readings there are reduced to their base.
    """
    parser = _Page()
    parser.feed(page)
    parser.close()
    return plain("".join(parser.out))
