"""Chunking: by headings and paragraphs, 150-300 words, heading paths remembered."""

from __future__ import annotations

from knowledge.chunking import MAX_WORDS, chunk_blocks, word_count
from knowledge.parsers import Block


def words(n: int, word: str = "word") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def test_each_section_keeps_its_heading_path():
    blocks = [
        Block("Guide", 1),
        Block("Returns", 2),
        Block(words(200, "r")),
        Block("Refunds", 3),
        Block(words(180, "f")),
        Block("Shipping", 2),
        Block(words(160, "s")),
    ]
    chunks = chunk_blocks(blocks)
    assert [(c.ordinal, c.heading) for c in chunks] == [
        (0, "Guide > Returns"),
        (1, "Guide > Returns > Refunds"),
        (2, "Guide > Shipping"),
    ]
    assert chunks[0].text == words(200, "r")
    assert [c.word_count for c in chunks] == [200, 180, 160]


def test_paragraphs_are_packed_up_to_the_limit_and_balanced_never_split():
    paragraphs = [words(35, f"p{i}_") for i in range(10)]  # 350 words in all
    chunks = chunk_blocks([Block("Section", 1), *[Block(p) for p in paragraphs]])
    assert [c.word_count for c in chunks] == [175, 175]  # not 280 + 70
    assert chunks[0].text == "\n\n".join(paragraphs[:5])
    assert chunks[1].text == "\n\n".join(paragraphs[5:])
    for chunk in chunks:
        assert 150 <= chunk.word_count <= MAX_WORDS


def test_a_huge_paragraph_is_split_between_sentences():
    sentences = [f"Sentence {i} " + words(18, f"s{i}_") + "." for i in range(40)]  # ~800 words
    chunks = chunk_blocks([Block(" ".join(sentences))])
    assert len(chunks) >= 3
    assert all(c.word_count <= MAX_WORDS for c in chunks)
    for chunk in chunks:
        assert chunk.text.startswith("Sentence ")
        assert chunk.text.endswith(".")
    assert " ".join(c.text for c in chunks) == " ".join(sentences)


def test_a_huge_sentence_without_punctuation_or_spaces_is_still_bounded():
    chunks = chunk_blocks([Block(words(700))])
    assert [c.word_count for c in chunks] == [300, 300, 100]
    unspaced = chunk_blocks([Block("字" * 9000)])
    assert len(unspaced) == 3
    assert all(word_count(c.text) <= MAX_WORDS for c in unspaced)


def test_short_sections_merge_and_keep_their_headings_in_the_text():
    blocks = [Block("FAQ", 1)]
    for i in range(6):
        blocks += [Block(f"Question {i}?", 2), Block(words(40, f"a{i}_"))]
    chunks = chunk_blocks(blocks)
    assert [c.heading for c in chunks] == ["FAQ", "FAQ"]
    assert [c.word_count for c in chunks] == [4 * (40 + 2), 2 * (40 + 2)]
    assert chunks[0].text.startswith("Question 0?\n" + words(40, "a0_"))
    assert "\n\nQuestion 1?\n" in chunks[0].text


def test_text_before_any_heading_and_empty_input():
    chunks = chunk_blocks([Block("Intro text."), Block("Title", 1), Block(words(200))])
    assert [(c.heading, c.text) for c in chunks] == [("", "Intro text.\n\nTitle\n" + words(200))]
    assert chunk_blocks([]) == []
    assert chunk_blocks([Block("Only a heading", 1)]) == []
