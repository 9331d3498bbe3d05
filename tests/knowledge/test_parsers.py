"""Parsers: Markdown, HTML, plain text and PDF into headings and paragraphs."""

from __future__ import annotations

import pytest

from knowledge.parsers import Block, ParseError, decode_text, parse_document
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
