"""Untrusted text in a prompt: framed as data in tagged blocks the text itself cannot close.

Help-centre passages, conversation summaries and transcripts are data for the model, never
instructions. They go in blocks such as `<passage number="1">...</passage>`, outside the system
message, and every tag of `DATA_TAGS` written inside untrusted text (opening or closing, in any
case, with spaces, slashes or invisible characters) is defused: its "<" becomes U+2039 (a single
angle quotation mark), so "</transcript>" typed by a visitor reads as text and ends nothing.
"""

from __future__ import annotations

import re

DATA_TAGS = (
    "reference_data",
    "help_centre_passages",
    "passage",
    "conversation_summary",
    "previous_summary",
    "transcript",
    "turn",
)

# One class between "<" and the name (no two quantifiers competing): linear.
_TAG_START = re.compile(
    "[<\uff1c\ufe64][\\s/\u200b-\u200d\u2060\ufeff]*(?=(?:" + "|".join(DATA_TAGS) + ")(?![\\w-]))",
    re.IGNORECASE,
)


def neutralise(text: str) -> str:
    """`text` with every data tag in it defused ("</passage>" -> "\u2039/passage>")."""
    return _TAG_START.sub(lambda m: "\u2039" + m.group(0)[1:], text)


def data_block(tag: str, text: str, **attributes: str | int) -> str:
    """`text` (untrusted: defused) between `<tag ...>` and `</tag>` on lines of their own."""
    return data_section(tag, neutralise(text), **attributes)


def data_section(tag: str, inner: str, **attributes: str | int) -> str:
    """Blocks already built (by `data_block`) inside `<tag ...>`: `inner` is not defused again."""
    if tag not in DATA_TAGS:
        raise ValueError(f"not a data tag: {tag!r}")
    attrs = "".join(f' {name}="{value}"' for name, value in attributes.items())
    return f"<{tag}{attrs}>\n{inner.strip(chr(10))}\n</{tag}>"
