"""Text out of uploaded files: Markdown, HTML, plain text and PDF, as headings and paragraphs.

`parse_document(filename, content)` picks the parser by the file's extension and returns a
`ParsedDocument`: a title and a list of `Block`s (a heading with its level, or a paragraph).
Anything unreadable raises `ParseError` with a message fit for the person who sent the file.

Uploads are untrusted, and parsing runs in the request that received them, so every pattern
here scans in linear time (no two unbounded quantifiers compete for the same characters, and a
scan that starts at "[" or "<" stops at the next one), and `ParseLimits` caps what a file may
make us do: the longest line of Markdown or text, the pages of a PDF and the characters of text
extracted. A file over a cap is refused (`ParseError` naming the cap), never cut short.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

MARKDOWN = "markdown"
HTML = "html"
TEXT = "text"
PDF = "pdf"

EXTENSIONS = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".txt": TEXT,
    ".pdf": PDF,
}

_MAX_TITLE = 300


class ParseError(ValueError):
    """The file cannot be turned into text (unsupported, damaged, encrypted, empty, over a cap)."""


@dataclass(frozen=True)
class ParseLimits:
    """What one file may cost (settings KNOWLEDGE_MAX_LINE_CHARS, _PDF_PAGES, _TEXT_CHARS)."""

    max_line_chars: int = 20_000  # the longest line of a Markdown or text file
    max_pdf_pages: int = 500
    max_text_chars: int = 2_000_000  # text in a file, or extracted from an HTML page or a PDF


@dataclass(frozen=True)
class Block:
    text: str
    level: int = 0  # 0: a paragraph; 1-6: a heading of that level

    @property
    def is_heading(self) -> bool:
        return self.level > 0


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    blocks: list[Block]
    content_type: str

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks)


def content_type_for(filename: str) -> str | None:
    """markdown/html/text/pdf by the file's extension, or None when it is not supported."""
    return EXTENSIONS.get(PurePath(filename).suffix.lower())


def parse_document(
    filename: str, content: bytes, limits: ParseLimits | None = None
) -> ParsedDocument:
    """The headings and paragraphs of a file; ParseError when it is refused (see ParseLimits)."""
    limits = limits or ParseLimits()
    kind = content_type_for(filename)
    if kind is None:
        supported = ", ".join(sorted(EXTENSIONS))
        raise ParseError(f"unsupported file type (supported: {supported})")
    if kind == PDF:
        title, blocks = _parse_pdf(content, limits)
    else:
        text = decode_text(content, html=kind == HTML)
        if kind == HTML:
            title, blocks = _parse_html(text)
            _check_text_chars(sum(len(b.text) for b in blocks), limits)
        else:
            text = _lines_checked(text, limits)
            if kind == MARKDOWN:
                title, blocks = _parse_markdown(text)
            else:
                title, blocks = "", _paragraphs(text)
    blocks = [b for b in blocks if b.text.strip()]
    if not any(not b.is_heading for b in blocks):
        raise ParseError("no text found in the file")
    if not title:
        title = next((b.text for b in blocks if b.level == 1), "") or title_from_filename(filename)
    return ParsedDocument(title=_clip(title, _MAX_TITLE), blocks=blocks, content_type=kind)


def title_from_filename(filename: str) -> str:
    stem = PurePath(filename).stem
    words = re.sub(r"[_\-.]+", " ", stem).strip()
    return (words[:1].upper() + words[1:]) if words else "Untitled"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- limits ----------------------------------------------------------------------------------------


def _check_text_chars(chars: int, limits: ParseLimits) -> None:
    if chars > limits.max_text_chars:
        raise ParseError(
            f"the file has more than {limits.max_text_chars:,} characters of text, the most "
            "accepted (KNOWLEDGE_MAX_TEXT_CHARS): split it into smaller files"
        )


def _lines_checked(text: str, limits: ParseLimits) -> str:
    """Markdown or plain text with "\n" line ends, refused when over a cap."""
    _check_text_chars(len(text), limits)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > limits.max_line_chars:
            line = text.count("\n", 0, start) + 1
            raise ParseError(
                f"line {line} is longer than {limits.max_line_chars:,} characters, the most "
                "accepted (KNOWLEDGE_MAX_LINE_CHARS): is this really a Markdown or text file?"
            )
        start = end + 1
    return text


# -- decoding --------------------------------------------------------------------------------------

# One way to match any text: `\s*=\s*["']?` is followed by a name character, so the spaces
# around "=" and a quote split only one way (a second `\s*` after the quote made a run of spaces
# quadratic).
_META_CHARSET = re.compile(rb"""<meta[^<>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)


def decode_text(content: bytes, *, html: bool = False) -> str:
    """Bytes -> str: a BOM, else UTF-8, else (HTML) the declared charset, else Windows-1252."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if content.startswith(bom):
            return content.decode(encoding, errors="replace")
    if b"\x00" in content[:4096]:
        raise ParseError("this looks like a binary file, not text")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if html:
        match = _META_CHARSET.search(content[:4096])
        if match:
            try:
                return content.decode(match.group(1).decode("ascii"), errors="replace")
            except LookupError:
                pass
    return content.decode("cp1252", errors="replace")


# -- plain text ------------------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n\s*\n")


def _paragraphs(text: str) -> list[Block]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = []
    for part in _BLANK_LINES.split(text):
        lines = [line.rstrip() for line in part.strip("\n").split("\n")]
        paragraph = "\n".join(line for line in lines if line.strip()).strip()
        if paragraph:
            blocks.append(Block(paragraph))
    return blocks


# -- Markdown --------------------------------------------------------------------------------------

_ATX_OPEN = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RULE = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_TABLE_CELL = re.compile(r":?-{2,}:?")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\[\]]+\]:[ \t]+\S")
# Inline images and links. A scan that starts at "[" stops at the next "[" (no class below
# takes "["), so each character is read by one attempt at most: linear in the paragraph.
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\((?:[^()\[\]]|\([^()\[\]]*\))*\)")
_LINK = re.compile(r"\[([^\[\]]+)\]\((?:[^()\[\]\s]|\([^()\[\]]*\))*(?:\s+\"[^\"\[\]]*\")?\)")
_REF_LINK = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


def _inline(text: str) -> str:
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    return _REF_LINK.sub(r"\1", text)


def _heading_text(text: str) -> str:
    return " ".join(_inline(text).replace("`", "").strip(" *_").split())


def _atx_heading(line: str) -> tuple[int, str] | None:
    """(level, raw text) of an ATX heading ("## Refunds ##"), or None. `line` is right-stripped."""
    opening = _ATX_OPEN.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].strip(" \t")
    closed = text.rstrip("#")
    if closed != text and (not closed or closed[-1] in " \t"):
        text = closed.rstrip(" \t")  # the optional closing sequence
    return len(opening.group(1)), text


def _is_table_rule(line: str) -> bool:
    """The rule under a table's header: "|---|:--:|", "--- | ---"."""
    row = line.strip()
    row = row.removeprefix("|").removesuffix("|")
    return bool(row) and all(_TABLE_CELL.fullmatch(cell.strip()) for cell in row.split("|"))


def strip_between(text: str, opening: str, closing: str) -> str:
    """`text` without each `opening`...`closing` span (an unclosed one runs to the end).

    Two plain string searches per span: linear, where the pattern "<!--.*?-->" rescans the rest
    of the text from every unclosed "<!--".
    """
    kept: list[str] = []
    position = 0
    while (start := text.find(opening, position)) >= 0:
        kept.append(text[position:start])
        end = text.find(closing, start + len(opening))
        position = len(text) if end < 0 else end + len(closing)
    kept.append(text[position:])
    return "".join(kept)


def _front_matter_title(front: str) -> str:
    for line in front.split("\n"):
        if line.startswith("title:"):
            return line[len("title:") :].strip().strip("\"'")
    return ""


def _parse_markdown(text: str) -> tuple[str, list[Block]]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    title = ""
    front = _FRONT_MATTER.match(text)
    if front:
        title = _front_matter_title(front.group(1))
        text = text[front.end() :]
    text = strip_between(text, "<!--", "-->")
    blocks: list[Block] = []
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Block(_inline("\n".join(paragraph)).strip()))
            paragraph.clear()

    for raw in text.split("\n"):
        line = raw.rstrip()
        if fence is not None:
            if line.strip().startswith(fence):
                blocks.append(Block("\n".join(code).strip("\n")))
                fence, code = None, []
            else:
                code.append(raw)
            continue
        opening = _FENCE.match(line)
        if opening:
            flush()
            fence = opening.group(1)[:3]
            continue
        if not line.strip():
            flush()
            continue
        atx = _atx_heading(line)
        if atx:
            flush()
            heading = _heading_text(atx[1])
            if heading:
                blocks.append(Block(heading, level=atx[0]))
            continue
        setext = _SETEXT.match(line)
        if setext and len(paragraph) == 1:
            heading = _heading_text(paragraph.pop())
            blocks.append(Block(heading, level=1 if setext.group(1)[0] == "=" else 2))
            continue
        if _RULE.match(line):
            flush()
            continue
        if _is_table_rule(line) or _LINK_DEF.match(line):
            continue
        paragraph.append(line.strip())
    if fence is not None and code:
        blocks.append(Block("\n".join(code).strip("\n")))
    flush()
    return title, blocks


# -- HTML ------------------------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "canvas"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "caption",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
}
_CELLS = {"td", "th"}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._parts: list[str] = []
        self._skip: list[str] = []
        self._heading = 0
        self._pre = 0
        self._in_title = False
        self._title_parts: list[str] = []

    # -- events
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.append(tag)
            return
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
            return
        if tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre += 1
            elif tag == "li":
                self._parts.append("- ")
        elif tag in _CELLS:
            self._parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._parts.append(f" {alt} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return  # <svg/> and the like: nothing inside
        self.handle_starttag(tag, attrs)
        if tag not in {"br", "hr", "img"}:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag == "title":
            self._in_title = False
            self.title = " ".join("".join(self._title_parts).split())
        elif tag in _HEADINGS:
            self._flush()
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre" and self._pre:
                self._pre -= 1
        elif tag in _CELLS:
            self._parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self._title_parts.append(data)
            return
        self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    # -- blocks
    def _flush(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        level, self._heading = self._heading, 0
        text = raw.strip("\n") if self._pre else " ".join(raw.split())
        if not text.strip() or text.strip() == "-":
            return
        self.blocks.append(Block(text, level=level))


# A "<" with no ">" before the next "<" (or the end) opens no tag that can ever be closed.
_UNCLOSED_LT = re.compile(r"<(?=[^<>]*(?:<|\Z))")


def defused_html(text: str) -> str:
    """`text` made safe for html.parser, which it then reads in linear time.

    html.parser (Python 3.11 before 3.11.13) rescans the rest of the document from every
    construct it cannot close: a few hundred kilobytes of "<a", "</", "<?" or "<!--" cost minutes.
    Comments and marked sections ("<![CDATA[...]]>", Word's "<![if ...]>") are taken out first,
    what could still open one is written as text ("&lt;!--"), and so is every "<" that has no
    ">" before the next "<" (a browser shows those as text too).
    """
    text = strip_between(text, "<!--", "-->")
    text = strip_between(text, "<![", "]>")
    text = text.replace("<!--", "&lt;!--").replace("<![", "&lt;![")
    return _UNCLOSED_LT.sub("&lt;", text)


def _parse_html(text: str) -> tuple[str, list[Block]]:
    parser = _HTMLText()
    try:
        parser.feed(defused_html(text))
        parser.close()
    except Exception as exc:  # html.parser is lenient; anything left is a broken file
        raise ParseError(f"cannot read the HTML: {exc}") from None
    return parser.title, parser.blocks


# -- PDF -------------------------------------------------------------------------------------------

_HYPHENATED = re.compile(r"(\w)-\n(\w)")
_SENTENCE_END = (".", "!", "?", ":", "\u3002", "\uff01", "\uff1f")  # also CJK . ! ?


def _parse_pdf(content: bytes, limits: ParseLimits) -> tuple[str, list[Block]]:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files are our ParseError
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted")
        title = ""
        metadata = reader.metadata
        if metadata is not None and metadata.title:
            title = str(metadata.title)
        if len(reader.pages) > limits.max_pdf_pages:
            raise ParseError(
                f"the PDF has {len(reader.pages):,} pages, more than the {limits.max_pdf_pages:,} "
                "accepted (KNOWLEDGE_MAX_PDF_PAGES): split it into smaller files"
            )
        pages: list[str] = []
        chars = 0
        for pdf_page in reader.pages:
            pages.append(pdf_page.extract_text() or "")
            chars += len(pages[-1])
            _check_text_chars(chars, limits)  # before the next page is read
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"cannot read the PDF: {type(exc).__name__}: {exc}") from None
    blocks: list[Block] = []
    for page in pages:
        blocks.extend(_pdf_page_paragraphs(page))
    if not blocks:
        raise ParseError("no text found in the PDF (a scanned document needs OCR first)")
    return title, blocks


def _pdf_page_paragraphs(text: str) -> list[Block]:
    """PDF text has a line per printed line: rejoin lines into paragraphs.

    A paragraph ends at a blank line, or after a line that ends a sentence and is clearly shorter
    than the page's longest lines (the last line of a printed paragraph). A short line without
    final punctuation before a capitalised line (a title, a heading) stands on its own.
    """
    text = _HYPHENATED.sub(r"\1\2", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.strip() for line in text.split("\n")]
    width = max((len(line) for line in lines), default=0)
    blocks: list[Block] = []
    current: list[str] = []

    def close() -> None:
        if current:
            blocks.append(Block(" ".join(current)))
            current.clear()

    for i, line in enumerate(lines):
        if not line:
            close()
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            not current
            and len(line) < 0.5 * width
            and not line.endswith((*_SENTENCE_END, ",", ";"))
            and following[:1].isupper()
        ):
            blocks.append(Block(line))
            continue
        current.append(line)
        if line.endswith(_SENTENCE_END) and len(line) < 0.8 * width:
            close()
    close()
    return blocks
