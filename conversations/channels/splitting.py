"""Splitting a reply into the parts a message channel can carry: at paragraph boundaries where
they fit, then at sentence ends, then at spaces, and only a word longer than the limit is cut."""

import re

_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+")


def split_text(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters, each stripped, none empty."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    text = text.strip()
    if not text:
        return []
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        joiner = piece[1]
        candidate = f"{current}{joiner}{piece[0]}" if current else piece[0]
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                parts.append(current.strip())
            current = piece[0]
    if current.strip():
        parts.append(current.strip())
    return parts


def _pieces(text: str, limit: int) -> list[tuple[str, str]]:
    """(piece, the separator to join it to the one before) with every piece within `limit`."""
    pieces: list[tuple[str, str]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        joiner = "\n\n"
        if len(paragraph) <= limit:
            pieces.append((paragraph, joiner))
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            for chunk in _by_words(sentence, limit):
                pieces.append((chunk, joiner))
                joiner = " "
    return pieces


def _by_words(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    chunks: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(word[:limit])
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= limit:
            current = candidate
        else:
            chunks.append(current)
            current = word
    if current:
        chunks.append(current)
    return chunks
