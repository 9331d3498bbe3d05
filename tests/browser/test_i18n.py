"""static/widget/i18n.js in Chromium: every language has every string, same placeholders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.browser

LANGUAGES = ["en", "es", "fr", "de", "pt"]


# Compares every language's table with English: same keys, same {placeholders} in every plural
# form, no empty strings; counts the strings left identical to English.
CHECK_TABLES = """() => {
    const { strings, languages } = window.SupportbotWidgetI18n;
    const holes = (text) =>
        [...String(text).matchAll(/\\{(\\w+)\\}/g)].map((m) => m[1]).sort().join(",");
    const forms = (value) => (value && typeof value === "object" ? value : { other: value });
    const englishKeys = Object.keys(strings.en).sort().join(",");
    const problems = [];
    const same = {};
    for (const lang of languages) {
        const table = strings[lang];
        if (Object.keys(table).sort().join(",") !== englishKeys) problems.push(`${lang}: keys`);
        same[lang] = 0;
        for (const [key, english] of Object.entries(strings.en)) {
            const value = table[key];
            const where = `${lang}.${key}`;
            if (value === undefined) continue;
            if (typeof value !== typeof english) problems.push(`${where}: type`);
            const want = holes(forms(english).other);
            for (const [form, text] of Object.entries(forms(value))) {
                const at = `${where}.${form}`;
                if (typeof text !== "string" || !text.trim()) problems.push(`${at}: empty`);
                if (holes(text) !== want) problems.push(`${at}: ${holes(text)} != ${want}`);
            }
            if (typeof value === "object" && !("one" in value && "other" in value)) {
                problems.push(`${where}: plural forms`);
            }
            if (JSON.stringify(value) === JSON.stringify(english)) same[lang] += 1;
        }
    }
    return { languages, problems, same };
}"""


@pytest.fixture(scope="module")
def i18n_page(browser: Any, static_site: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(static_site.origin + "/pages/markdown.html")
    # As loader.js loads it on a customer's page: a classic script, not a module.
    page.add_script_tag(url=static_site.origin + "/static/widget/i18n.js")
    page.wait_for_function("Boolean(window.SupportbotWidgetI18n)")
    assert errors == []
    yield page
    context.close()


def test_every_language_has_every_string_with_the_same_placeholders(i18n_page: Any) -> None:
    report = i18n_page.evaluate(CHECK_TABLES)
    assert report["languages"] == LANGUAGES
    assert report["problems"] == []
    # Translated, not copied: a few words are the same in English (Support, Conversation, Sources).
    for lang in LANGUAGES[1:]:
        assert report["same"][lang] <= 4, (lang, report["same"][lang])


def test_languages_and_plurals(i18n_page: Any) -> None:
    result = i18n_page.evaluate(
        """() => {
            const i18n = window.SupportbotWidgetI18n;
            const lang = (l) => i18n.languageOf(l);
            const fr = i18n.pick("fr-CA");
            const en = i18n.pick("en");
            return {
                languages: ["es-ES", "pt_BR", "DE", "fr", "ja-JP", "", null, "english"].map(lang),
                supports: ["es", "es-MX", "ja", "", "pt-BR"].map((l) => i18n.supports(l)),
                picked: [i18n.pick("es-ES")._lang, i18n.pick("zh")._lang],
                en: [1, 2].map((n) => i18n.format(en.charactersLeft, { count: n }, "en")),
                fr: [0, 1, 5].map((n) => i18n.format(fr.charactersLeft, { count: n }, "fr")),
                seconds: i18n.format(i18n.pick("de").errorRateLimited, { seconds: 1 }, "de"),
                plain: i18n.format("{name} · x {missing}", { name: "Sam" }),
            };
        }"""
    )
    assert result["languages"] == ["es", "pt", "de", "fr", "en", "en", "en", "en"]
    assert result["supports"] == [True, True, False, False, True]
    assert result["picked"] == ["es", "en"]
    assert result["en"] == ["1 character left", "2 characters left"]
    assert result["fr"] == ["0 caractère restant", "1 caractère restant", "5 caractères restants"]
    assert "warten Sie 1 Sekunde " in result["seconds"]
    assert result["plain"] == "Sam · x {missing}"
