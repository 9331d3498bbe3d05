"""Blocks (headings and paragraphs) -> chunks of about 150-300 words that remember their headings.

- A heading starts a new section; each chunk knows its heading path ("Returns > Refunds").
- A section's paragraphs are packed into chunks of at most `max_words`, balanced so that the last
  chunk of a section is not a scrap (350 words -> 175 + 175, not 300 + 50).
- A paragraph is never split unless it alone exceeds `max_words`; then it is split between
  sentences (between words, or characters for unspaced scripts, if a sentence is that long).
- A chunk still shorter than `min_words` takes in the next sections while it stays within
  `max_words`; its heading becomes the headings they share, and each section's own heading is
  kept as a line of the text (an FAQ of short answers does not become one chunk per answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from knowledge.parsers import Block

MAX_WORDS = 300
MIN_WORDS = 150
HEADING_SEPARATOR = " > "
_CHARS_PER_WORD = 12  # for scripts written without spaces: a "word" per this many characters
_SENTENCE_BREAK = re.compile("(?<=[.!?\u3002\uff01\uff1f])\\s+")  # also CJK . ! ?


def word_count(text: str) -> int:
    return max(len(text.split()), len(text) // _CHARS_PER_WORD)


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    heading: str
    text: str
    word_count: int


@dataclass
class _Part:
    path: tuple[str, ...]
    paragraphs: list[str]
    words: int
    opens_section: bool  # the first part of its section (may be merged into a small chunk)


@dataclass
class _Chunk:
    parts: list[_Part] = field(default_factory=list)

    @property
    def words(self) -> int:
        return sum(p.words for p in self.parts)


def chunk_blocks(
    blocks: Sequence[Block], *, max_words: int = MAX_WORDS, min_words: int = MIN_WORDS
) -> list[ChunkDraft]:
    if max_words < 1 or min_words > max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    parts: list[_Part] = []
    for path, paragraphs in _sections(blocks):
        parts.extend(_pack_section(path, paragraphs, max_words))
    chunks: list[_Chunk] = []
    for part in parts:
        current = chunks[-1] if chunks else None
        if (
            current is not None
            and part.opens_section
            and current.words < min_words
            and current.words + part.words <= max_words
        ):
            current.parts.append(part)
        else:
            chunks.append(_Chunk([part]))
    return [_render(i, chunk) for i, chunk in enumerate(chunks)]


def _sections(blocks: Sequence[Block]) -> list[tuple[tuple[str, ...], list[str]]]:
    """(heading path, paragraphs) for each run of paragraphs, in order."""
    stack: list[tuple[int, str]] = []
    sections: list[tuple[tuple[str, ...], list[str]]] = []
    paragraphs: list[str] = []

    def close() -> None:
        if paragraphs:
            sections.append((tuple(text for _, text in stack), list(paragraphs)))
            paragraphs.clear()

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.is_heading:
            close()
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, " ".join(text.split())))
        else:
            paragraphs.append(text)
    close()
    return sections


def _pack_section(path: tuple[str, ...], paragraphs: list[str], max_words: int) -> list[_Part]:
    pieces: list[tuple[str, int]] = []
    for paragraph in paragraphs:
        words = word_count(paragraph)
        if words > max_words:
            pieces.extend((piece, word_count(piece)) for piece in _split_long(paragraph, max_words))
        else:
            pieces.append((paragraph, words))
    total = sum(words for _, words in pieces)
    target = total / max(1, math.ceil(total / max_words))
    parts: list[_Part] = []
    current: list[str] = []
    current_words = 0
    for piece, words in pieces:
        if current and current_words + words > max_words:
            parts.append(_Part(path, current, current_words, not parts))
            current, current_words = [], 0
        current.append(piece)
        current_words += words
        if current_words >= target:
            parts.append(_Part(path, current, current_words, not parts))
            current, current_words = [], 0
    if current:
        parts.append(_Part(path, current, current_words, not parts))
    return parts


def _split_long(paragraph: str, max_words: int) -> list[str]:
    """A paragraph longer than max_words, cut between sentences into pieces of at most that."""
    units: list[str] = []
    for sentence in _SENTENCE_BREAK.split(paragraph):
        if word_count(sentence) <= max_words:
            units.append(sentence)
            continue
        words = sentence.split()
        if len(words) > 1:
            step = max_words
            units.extend(" ".join(words[i : i + step]) for i in range(0, len(words), step))
        else:
            size = max_words * _CHARS_PER_WORD
            units.extend(sentence[i : i + size] for i in range(0, len(sentence), size))
    pieces: list[str] = []
    current: list[str] = []
    current_words = 0
    for unit in units:
        words = word_count(unit)
        if current and current_words + words > max_words:
            pieces.append(" ".join(current))
            current, current_words = [], 0
        current.append(unit)
        current_words += words
    if current:
        pieces.append(" ".join(current))
    return pieces


def _render(ordinal: int, chunk: _Chunk) -> ChunkDraft:
    paths = [part.path for part in chunk.parts]
    shared = list(paths[0])
    for path in paths[1:]:
        n = 0
        while n < min(len(shared), len(path)) and shared[n] == path[n]:
            n += 1
        del shared[n:]
    texts: list[str] = []
    for part in chunk.parts:
        own = part.path[len(shared) :]
        body = "\n\n".join(part.paragraphs)
        if own and len(chunk.parts) > 1:
            body = HEADING_SEPARATOR.join(own) + "\n" + body
        texts.append(body)
    text = "\n\n".join(texts)
    return ChunkDraft(
        ordinal=ordinal,
        heading=HEADING_SEPARATOR.join(shared),
        text=text,
        word_count=word_count(text),
    )
