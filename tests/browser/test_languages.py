"""The language switcher on a resident page, on a phone, in real Chromium, in every language."""

from __future__ import annotations

from playwright.sync_api import Browser, BrowserContext

from madoguchi.web import i18n

from .conftest import LiveServer, assert_accessible

PHONE = {"width": 390, "height": 844}


def test_the_switcher_changes_and_keeps_the_language(browser: Browser, server: LiveServer) -> None:
    context: BrowserContext = browser.new_context(
        base_url=server.url, viewport=PHONE, has_touch=True, locale="ko-KR"
    )
    try:
        page = context.new_page()
        page.goto("/")
        # The browser's language first (Chromium sends Accept-Language: ko-KR).
        assert page.locator("html").get_attribute("lang") == "ko"
        nav = page.locator("nav.languages")
        for language in i18n.LANGUAGES:
            link = nav.locator(f'a[lang="{language.tag}"]')
            assert link.inner_text().replace("\n", "") != ""
            box = link.bounding_box()
            assert box is not None
            assert min(box["width"], box["height"]) >= 44, (language.code, box)
        assert nav.locator("a[aria-current]").get_attribute("lang") == "ko"
        assert_accessible(page)

        for language in i18n.LANGUAGES:
            nav.locator(f'a[lang="{language.tag}"]').click()
            page.wait_for_function("tag => document.documentElement.lang === tag", arg=language.tag)
            assert nav.locator("a[aria-current]").get_attribute("lang") == language.tag
            assert (page.locator("ruby").count() > 0) == language.furigana
            assert_accessible(page)

        # Chosen once, kept: a page without ?lang= comes in the last choice.
        page.goto("/")
        assert page.locator("html").get_attribute("lang") == "vi"
        # Easy Japanese: furigana over the kanji, and still no axe violation.
        page.goto("/?lang=ja-easy")
        assert page.locator("ruby rt").count() > 0
        assert_accessible(page)
    finally:
        context.close()


def test_japanese_furigana_on_request(context: BrowserContext) -> None:
    page = context.new_page()
    page.goto("/?lang=ja")
    assert page.locator("ruby").count() == 0
    page.goto("/?furigana=1")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("ruby rt").count() > 0
    assert_accessible(page)
    page.goto("/")
    assert page.locator("ruby rt").count() > 0  # remembered
    page.goto("/?furigana=0")
    assert page.locator("ruby").count() == 0
