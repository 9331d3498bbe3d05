"""static/widget/markdown.js in Chromium: safe with hostile text, right with ordinary Markdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ALLOWED_TAGS = {
    "P", "BR", "STRONG", "EM", "DEL", "CODE", "PRE", "UL", "OL", "LI", "A", "BLOCKQUOTE", "HR",
    "SPAN",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"href", "target", "rel", "start", "class", "data-language"}


@pytest.fixture(scope="module")
def md_page(browser: Any, static_site: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.requests_seen = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests_seen.append(request.url))  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.xss_dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
    page.xss_dialogs = []  # type: ignore[attr-defined]
    page.goto(static_site.origin + "/pages/markdown.html")
    page.wait_for_function("window.harnessReady === true")
    yield page
    context.close()


def render(page: Any, text: str) -> dict[str, Any]:
    """Render `text`; return the HTML and a structural summary of what was built."""
    return page.evaluate(
        """(text) => {
            const html = window.renderInto(text);
            const out = document.getElementById("out");
            const elements = [...out.querySelectorAll("*")];
            return {
                html,
                text: out.textContent,
                tags: elements.map((e) => e.tagName),
                attributes: elements.flatMap((e) => [...e.attributes].map((a) => a.name)),
                links: [...out.querySelectorAll("a")].map((a) => ({
                    href: a.getAttribute("href"), target: a.target, rel: a.rel, text: a.textContent,
                })),
            };
        }""",
        text,
    )


def assert_only_safe_nodes(result: dict[str, Any]) -> None:
    assert set(result["tags"]) <= ALLOWED_TAGS, result["html"]
    assert set(result["attributes"]) <= ALLOWED_ATTRIBUTES, result["html"]
    assert not any(attr.startswith("on") for attr in result["attributes"])


XSS_PAYLOADS = [
    '<img src=x onerror="window.xssFired.push(1)">',
    "<script>window.xssFired.push(2)</script>",
    '<svg onload="window.xssFired.push(3)"></svg>',
    '<a href="javascript:window.xssFired.push(4)">click</a>',
    '<iframe src="javascript:window.xssFired.push(5)"></iframe>',
    "**<img src=x onerror=window.xssFired.push(6)>**",
    "`<script>window.xssFired.push(7)</script>`",
    "```html\n<script>window.xssFired.push(8)</script>\n```",
    "[<img src=x onerror=window.xssFired.push(9)>](https://example.com)",
    '<details open ontoggle="window.xssFired.push(10)">x</details>',
    "<style>body{display:none}</style>",
    '"><img src=x onerror=alert(11)>',
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_raw_html_is_shown_as_text_and_never_runs(md_page: Any, payload: str) -> None:
    result = render(md_page, payload)
    md_page.wait_for_timeout(50)  # give an injected handler a chance to fire
    assert md_page.evaluate("window.xssFired") == []
    assert md_page.xss_dialogs == []
    assert_only_safe_nodes(result)
    # The angle brackets survive as visible text.
    assert "<" in result["text"]


@pytest.mark.parametrize(
    "markdown",
    [
        "[click](javascript:window.xssFired.push(1))",
        "[click](JaVaScRiPt:window.xssFired.push(1))",
        "[click]( javascript:window.xssFired.push(1))",
        "[click](java\tscript:window.xssFired.push(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[click](vbscript:msgbox(1))",
        "[click](//evil.example/path)",
        "[click](/relative/path)",
        "<javascript:window.xssFired.push(1)>",
        "![x](javascript:window.xssFired.push(1))",
    ],
)
def test_unsafe_links_become_text(md_page: Any, markdown: str) -> None:
    result = render(md_page, markdown)
    assert result["links"] == [], result["html"]
    assert_only_safe_nodes(result)
    assert "click" in result["text"] or "x" in result["text"] or "javascript" in result["text"]


def test_safe_links_open_in_a_new_tab_without_opener(md_page: Any) -> None:
    result = render(
        md_page,
        "See [the help centre](https://help.example.com/a?b=1&c=2), "
        "mail [us](mailto:help@example.com) "
        "or visit http://example.org/page. Also <https://example.net/x>.",
    )
    links = result["links"]
    assert [link["href"] for link in links] == [
        "https://help.example.com/a?b=1&c=2",
        "mailto:help@example.com",
        "http://example.org/page",
        "https://example.net/x",
    ]
    for link in links:
        assert link["target"] == "_blank"
        assert set(link["rel"].split()) == {"noopener", "noreferrer"}
    assert links[0]["text"] == "the help centre"
    assert result["text"].endswith("Also https://example.net/x.")
    assert_only_safe_nodes(result)


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        # A label naming another host: the real one follows it.
        ("[bank.com](https://evil.example/login)", "bank.com (evil.example)"),
        ("[https://bank.com](https://evil.example:8443/)", "https://bank.com (evil.example:8443)"),
        ("[Log in](https://bank.com.evil.example/)", "Log in (bank.com.evil.example)"),
        ("![bank.com](https://evil.example/logo.png)", "bank.com (evil.example)"),
        # A look-alike name: the host shows as the browser resolves it (punycode).
        ("[b\u0430nk.com](https://b\u0430nk.com/)", "b\u0430nk.com (xn--bnk-6cd.com)"),
        ("https://b\u0430nk.com/x", "https://b\u0430nk.com/x (xn--bnk-6cd.com)"),
        # Labels that name the real host, and mail links, are shown as they are.
        ("[bank.com](https://bank.com/help)", "bank.com"),
        ("[BANK.com/help](https://bank.com/help)", "BANK.com/help"),
        ("<https://bank.com/x>", "https://bank.com/x"),
        ("https://bank.com/x", "https://bank.com/x"),
        ("[write to us](mailto:help@bank.com)", "write to us"),
    ],
)
def test_links_show_the_host_they_really_go_to(md_page: Any, markdown: str, shown: str) -> None:
    result = render(md_page, markdown)
    assert result["text"] == shown, result["html"]
    assert len(result["links"]) == 1
    assert result["links"][0]["text"] == shown.split(" (")[0]
    assert_only_safe_nodes(result)


def test_images_are_never_loaded(md_page: Any, static_site: Any) -> None:
    image = f"{static_site.origin}/tracker-image.png"
    raw = f"{static_site.origin}/raw-image.png"
    md_page.requests_seen.clear()
    result = render(md_page, f'Logo: ![Our logo]({image}) and <img src="{raw}"> inline.')
    md_page.wait_for_timeout(300)
    assert not any("tracker-image" in url or "raw-image" in url for url in md_page.requests_seen)
    assert "IMG" not in result["tags"]
    # The image becomes a plain link labelled with its alt text.
    assert result["links"] == [
        {"href": image, "target": "_blank", "rel": "noopener noreferrer", "text": "Our logo"}
    ]


def test_emphasis_code_and_line_breaks(md_page: Any) -> None:
    result = render(
        md_page,
        "Hello **bold** and *italic* and ***both*** and `a < b` and ~~old~~."
        "\nSecond line\n\nNew para",
    )
    html = result["html"]
    assert "<strong>bold</strong>" in html
    assert "<em>italic</em>" in html
    assert "<strong><em>both</em></strong>" in html or "<em><strong>both</strong></em>" in html
    assert "<code>a &lt; b</code>" in html
    assert "<del>old</del>" in html
    assert html.count("<p>") == 2
    assert "Second line" in html
    assert "<br>" in html
    # snake_case and lone asterisks stay as they are.
    plain = render(md_page, "use my_var_name and 2 * 3 * 4 and **not closed")
    assert plain["text"] == "use my_var_name and 2 * 3 * 4 and **not closed"
    assert plain["tags"] == ["P"]


def test_fenced_code_keeps_its_text_verbatim(md_page: Any) -> None:
    result = render(
        md_page, "Run:\n\n```bash\nls -la **not bold** <b>x</b>\n  indented\n```\nDone."
    )
    assert "PRE" in result["tags"]
    code = md_page.evaluate("document.querySelector('#out pre code').textContent")
    assert code == "ls -la **not bold** <b>x</b>\n  indented"
    assert md_page.evaluate("document.querySelector('#out pre code').dataset.language") == "bash"
    # A fence still open (a reply mid-stream) renders as code so far.
    partial = render(md_page, "```\nstill streaming")
    assert partial["tags"] == ["PRE", "CODE"]


def test_lists(md_page: Any) -> None:
    result = render(
        md_page,
        "Steps:\n1. Open **Settings**\n2. Choose *Password*\n   continued line\n3. Save\n\n"
        "- apples\n- pears\n  - green\n  - red\n* plums",
    )
    assert result["tags"][:2] == ["P", "OL"]
    items = md_page.evaluate(
        "[...document.querySelectorAll('#out ol > li')].map((li) => li.innerHTML)"
    )
    assert items == [
        "Open <strong>Settings</strong>",
        "Choose <em>Password</em><br>continued line",
        "Save",
    ]
    outer = md_page.evaluate(
        "[...document.querySelectorAll('#out ul')][0].querySelectorAll(':scope > li').length"
    )
    assert outer == 3
    nested = md_page.evaluate(
        "[...document.querySelectorAll('#out ul ul > li')].map((li) => li.textContent)"
    )
    assert nested == ["green", "red"]
    started = render(md_page, "3. three\n4. four")
    assert 'start="3"' in started["html"]


def test_headings_quotes_and_rules(md_page: Any) -> None:
    result = render(md_page, "## Title\n> quoted *text*\n\n---\nafter")
    assert result["tags"] == ["P", "STRONG", "BLOCKQUOTE", "P", "EM", "HR", "P"]
    assert_only_safe_nodes(result)


def test_pathological_input_renders_quickly(md_page: Any) -> None:
    elapsed = md_page.evaluate(
        """() => {
            const inputs = ["*a".repeat(20000), "[".repeat(20000), "`".repeat(5000) + "x",
                            "_a".repeat(20000), "**a ".repeat(10000), "> ".repeat(5000) + "x",
                            "- ".repeat(3000) + "x"];
            const t0 = performance.now();
            for (const text of inputs) window.renderInto(text);
            return performance.now() - t0;
        }"""
    )
    assert elapsed < 2000, f"rendering pathological input took {elapsed:.0f} ms"
