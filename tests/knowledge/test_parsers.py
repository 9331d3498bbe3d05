"""Parsers: Markdown, HTML, plain text and PDF into headings and paragraphs."""

from __future__ import annotations

import re
import time
from re import _constants as re_constants
from re import _parser as re_parser

import pytest

from knowledge import parsers
from knowledge.parsers import (
    Block,
    ParseError,
    ParseLimits,
    decode_text,
    defused_html,
    parse_document,
    strip_between,
)
from tests.knowledge.pdf import make_pdf


def test_markdown_headings_paragraphs_front_matter_and_inline_links():
    source = """---
title: "Returns & refunds"
---
# Returns

You can return an item within **30 days**.
See [our form](https://shop.example/form "Form") for details.

Setext heading
--------------

- first item
- second item

```python
# not a heading
print("code")
```

| a | b |
|---|---|
| 1 | 2 |

[ref]: https://example.com
"""
    parsed = parse_document("returns.md", source.encode())
    assert parsed.title == "Returns & refunds"
    assert parsed.content_type == "markdown"
    assert parsed.blocks == [
        Block("Returns", level=1),
        Block("You can return an item within **30 days**.\nSee our form for details."),
        Block("Setext heading", level=2),
        Block("- first item\n- second item"),
        Block('# not a heading\nprint("code")'),
        Block("| a | b |\n| 1 | 2 |"),
    ]


def test_markdown_title_falls_back_to_the_first_h1_then_the_file_name():
    assert parse_document("x.md", b"intro\n\n# Shipping\n\ntext").title == "Shipping"
    assert parse_document("delivery-times_v2.md", b"just text").title == "Delivery times v2"


def test_html_drops_script_style_nav_and_keeps_headings():
    html = """<!doctype html><html><head><title> Shipping &amp; returns </title>
    <style>body { color: red }</style><script>var secret = "tracking";</script></head>
    <body><nav><a href="/">Home</a> | <a href="/shop">Shop</a></nav>
    <h1>Shipping</h1><p>We ship <b>worldwide</b>&nbsp;in 3&ndash;5 days.<br>Tracking included.</p>
    <div><h2>Costs</h2><ul><li>Free over 50 €</li><li>Else 4.90 €</li></ul></div>
    <table><tr><td>Spain</td><td>2 days</td></tr></table>
    <noscript>Enable JavaScript</noscript><svg><text>icon</text></svg><pre>  keep
  spacing</pre><footer>© Shop</footer></body></html>"""
    parsed = parse_document("page.html", html.encode())
    assert parsed.title == "Shipping & returns"
    assert parsed.content_type == "html"
    texts = [(b.level, b.text) for b in parsed.blocks]
    assert texts == [
        (1, "Shipping"),
        (0, "We ship worldwide in 3\u20135 days."),
        (0, "Tracking included."),
        (2, "Costs"),
        (0, "- Free over 50 €"),
        (0, "- Else 4.90 €"),
        (0, "Spain 2 days"),
        (0, "  keep\n  spacing"),
        (0, "© Shop"),
    ]
    assert "secret" not in parsed.text
    assert "Home" not in parsed.text
    assert "Enable JavaScript" not in parsed.text
    assert "icon" not in parsed.text


def test_html_in_a_declared_legacy_charset():
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Devolución</p></body></html>'
    parsed = parse_document("es.htm", html.encode("latin-1"))
    assert parsed.blocks == [Block("Devolución")]


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="iso-8859-1">',
        "<meta charset = 'iso-8859-1'>",
        "<meta charset=iso-8859-1>",
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">',
    ],
)
def test_the_declared_charset_is_read_in_its_usual_spellings(meta):
    html = f"<html><head>{meta}</head><body><p>Devolución</p></body></html>"
    assert parse_document("es.htm", html.encode("latin-1")).blocks == [Block("Devolución")]


def _whitespace_runs_split_one_way(pattern: re.Pattern[bytes]) -> bool:
    """True when no two repeats that match whitespace are separated only by optional items: a
    run of spaces then has one way to be shared between them (two `\\s*` with nothing mandatory
    between them try every split of a run that does not match: quadratic)."""
    space = (re_constants.IN, [(re_constants.CATEGORY, re_constants.CATEGORY_SPACE)])
    open_run = False  # a whitespace repeat seen, and nothing mandatory after it yet
    for op, arg in re_parser.parse(pattern.pattern.decode("latin-1"), pattern.flags):
        if op is re_constants.MAX_REPEAT and list(arg[2]) == [space]:
            if open_run:
                return False
            open_run = True
        elif not (op is re_constants.MAX_REPEAT and arg[0] == 0):
            open_run = False
    return True


def test_the_charset_pattern_matches_a_run_of_spaces_one_way():
    assert _whitespace_runs_split_one_way(parsers._META_CHARSET)
    quadratic = re.compile(rb"""charset\s*=\s*["']?\s*([a-z]+)""")  # the pattern it replaced
    assert not _whitespace_runs_split_one_way(quadratic)


def test_plain_text_paragraphs_and_encodings():
    parsed = parse_document("faq.txt", "Línea uno\nsigue\n\n\n  Segundo párrafo  \n".encode())
    assert parsed.blocks == [Block("Línea uno\nsigue"), Block("Segundo párrafo")]
    assert parsed.title == "Faq"
    assert decode_text("café".encode("cp1252")) == "café"
    assert decode_text("\ufeffhello".encode()) == "hello"
    assert decode_text("hi".encode("utf-16")) == "hi"


def test_pdf_text_is_extracted_and_lines_rejoined_into_paragraphs():
    data = make_pdf(
        [
            [
                "Warranty terms",
                "All electronics carry a warranty of two years from the date of",
                "purchase. Keep your receipt as proof of purchase.",
                "Batteries are covered for six months.",
            ],
            ["Claims are handled by our service team within ten working days."],
        ],
        title="Warranty (EU)",
    )
    parsed = parse_document("warranty.pdf", data)
    assert parsed.title == "Warranty (EU)"
    assert parsed.content_type == "pdf"
    assert [b.text for b in parsed.blocks] == [
        "Warranty terms",
        (
            "All electronics carry a warranty of two years from the date of purchase. "
            "Keep your receipt as proof of purchase."
        ),
        "Batteries are covered for six months.",
        "Claims are handled by our service team within ten working days.",
    ]


def test_pdf_without_metadata_title_uses_the_file_name():
    assert parse_document("care_guide.pdf", make_pdf([["Wash at 30 degrees."]])).title == (
        "Care guide"
    )


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("notes.docx", b"PK\x03\x04", "unsupported file type"),
        ("broken.pdf", b"%PDF-1.4\nnot really", "cannot read the PDF"),
        ("empty.pdf", make_pdf([[]]), "no text found"),
        ("blank.md", b"\n\n   \n", "no text found"),
        ("only-headings.md", b"# One\n## Two\n", "no text found"),
        ("binary.txt", b"\x00\x01\x02binary", "binary file"),
    ],
)
def test_unreadable_files_raise_parse_error(filename, content, message):
    with pytest.raises(ParseError, match=message):
        parse_document(filename, content)


# Files shaped to make a backtracking pattern (or html.parser) rescan the rest of the text from
# every position, each under the default caps. The quadratic versions needed 2 to 8 s of CPU for
# each of these; linear ones need a few milliseconds.
ADVERSARIAL = {
    "table rule": ("faq.md", "Intro\n" + " \t" * 9_500 + "x\n"),
    "links": ("faq.md", ("[" * 10_000 + "\n") * 4),
    "images": ("faq.md", ("![" * 5_000 + "\n") * 4),
    "comments": ("faq.md", "Intro\n\n" + ("<!--" * 2_500 + "\n") * 8),
    "heading": ("faq.md", "# a" + " " * 19_000 + "b\n\ntext"),
    "html start tags": ("faq.html", "<p>text</p>" + "<a" * 60_000),
    "html end tags": ("faq.html", "<p>text</p>" + "</" * 100_000),
    "html comments": ("faq.html", "<p>text</p>" + "<!--" * 30_000),
}
# CPU seconds of this process, so a busy machine does not count against it.
CPU_BOUND_SECONDS = 1.0


@pytest.mark.parametrize(("filename", "text"), ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_files_parse_in_linear_time(filename, text):
    started = time.process_time()
    parse_document(filename, text.encode())
    assert time.process_time() - started < CPU_BOUND_SECONDS


def test_a_long_front_matter_title_parses_in_linear_time():
    # Over the default line cap: an operator may raise it.
    text = "---\ntitle: a" + " " * 100_000 + "b\n---\nSome text."
    started = time.process_time()
    parsed = parse_document("faq.md", text.encode(), ParseLimits(max_line_chars=200_000))
    assert time.process_time() - started < CPU_BOUND_SECONDS
    assert parsed.title == "a b"


def test_markdown_constructs_still_read_the_same():
    source = (
        "## Refunds ##\n\n"
        'See ![the form](img/form(1).png) and [the policy](https://x.example/p_(a) "P").\n'
        "A [reference][ref], a [[bracket]] and [an unclosed](link.\n\n"
        "| a | b |\n| :-- | --: |\n\n"
        "--- | ---\n\n"
        "Kept <!-- hidden --> text <!-- not closed\n\nall gone\n"
    )
    assert parse_document("x.md", source.encode()).blocks == [
        Block("Refunds", level=2),
        Block("See the form and the policy.\nA reference, a [[bracket]] and [an unclosed](link."),
        Block("| a | b |"),
        Block("Kept  text"),
    ]


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("# Title", (1, "Title")),
        ("### Title ###", (3, "Title")),
        ("## Title#", (2, "Title#")),
        ("#", None),
        ("#Title", "paragraph"),
        ("####### seven", "paragraph"),
    ],
)
def test_atx_headings(line, heading):
    blocks = parse_document("x.md", f"{line}\n\nbody".encode()).blocks
    if heading is None:
        assert blocks == [Block("body")]
    elif heading == "paragraph":
        assert blocks[0] == Block(line)
    else:
        assert blocks[0] == Block(heading[1], level=heading[0])


def test_strip_between_removes_spans_and_an_unclosed_one_to_the_end():
    assert strip_between("a<!--x-->b<!---->c<!--d", "<!--", "-->") == "abc"
    assert strip_between("no spans", "<!--", "-->") == "no spans"


def test_html_that_could_not_close_a_tag_is_text():
    assert defused_html("<p>a < b</p><a") == "<p>a &lt; b</p>&lt;a"
    assert defused_html("x<!--a-->y<![CDATA[z]]>w<![if !vml]>v") == "xywv"
    # A comment opener put together by taking one out is text, not a new comment.
    assert defused_html("<!<!---->-- x>") == "&lt;!-- x>"
    parsed = parse_document("x.html", b"<p>2 < 3 and 5 > 4</p><p>fine</p>")
    assert parsed.blocks == [Block("2 < 3 and 5 > 4"), Block("fine")]


def test_a_line_over_the_cap_is_refused_naming_the_cap():
    limits = ParseLimits(max_line_chars=100)
    assert parse_document("x.md", b"intro\n\n" + b"w" * 100, limits).blocks[1].text == "w" * 100
    for name in ("x.md", "x.txt"):
        with pytest.raises(
            ParseError, match=r"line 3 is longer than 100 characters.*KNOWLEDGE_MAX_LINE_CHARS"
        ):
            parse_document(name, b"intro\r\n\r\n" + b"w" * 101, limits)
    # HTML is not read line by line: a page on one line is fine.
    html = b"<p>" + b"word " * 100 + b"</p>"
    assert parse_document("x.html", html, limits).blocks


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("x.txt", b"word " * 30),
        ("x.md", b"# Title\n\n" + b"word " * 30),
        ("x.html", b"<p>" + b"word " * 30 + b"</p>"),
        ("x.pdf", make_pdf([["word " * 15], ["word " * 15]])),
    ],
)
def test_text_over_the_cap_is_refused_naming_the_cap(filename, content):
    assert parse_document(filename, content, ParseLimits(max_text_chars=200)).blocks
    with pytest.raises(
        ParseError, match=r"more than 100 characters of text.*KNOWLEDGE_MAX_TEXT_CHARS"
    ):
        parse_document(filename, content, ParseLimits(max_text_chars=100))


def test_a_pdf_over_the_page_cap_is_refused_naming_the_cap():
    pdf = make_pdf([["First page."], ["Second page."], ["Third page."]])
    assert len(parse_document("x.pdf", pdf, ParseLimits(max_pdf_pages=3)).blocks) == 3
    with pytest.raises(
        ParseError, match=r"the PDF has 3 pages, more than the 2 accepted.*KNOWLEDGE_MAX_PDF_PAGES"
    ):
        parse_document("x.pdf", pdf, ParseLimits(max_pdf_pages=2))
