"""Token-aware chunking with the model's own tokenizer."""

from __future__ import annotations

import pytest

from semsearch.core.chunking import ChunkSpec, chunk_documents, chunk_text, effective_spec


def test_chunks_never_exceed_the_model_limit_even_for_one_huge_sentence(local_backend):
    text = " ".join(f"word{i}" for i in range(3000))  # one "sentence" of thousands of tokens
    spec = effective_spec(ChunkSpec(size=10_000, overlap=32), local_backend.max_input_tokens)
    chunks = chunk_text(text, spec, local_backend)
    assert len(chunks) > 1
    assert max(c.token_count for c in chunks) <= local_backend.max_input_tokens
    assert all(c.token_count == local_backend.count_tokens([c.text])[0] for c in chunks)


def test_chunks_break_at_paragraphs_and_sentences(local_backend):
    paragraph = "The first sentence is here. The second sentence follows it. A third one ends it."
    text = "\n\n".join([paragraph] * 6)
    chunks = chunk_text(text, ChunkSpec(size=40, overlap=0), local_backend)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.endswith(".")  # never cut mid-sentence
        assert chunk.token_count <= 40


def test_overlap_repeats_the_tail_of_the_previous_chunk(local_backend):
    sentences = [f"Sentence number {i} says something." for i in range(20)]
    chunks = chunk_text(" ".join(sentences), ChunkSpec(size=30, overlap=10), local_backend)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        last_sentence = previous.text.split(". ")[-1].rstrip(".")
        assert current.text.startswith(last_sentence)


def test_short_text_is_one_chunk_and_ids_are_stable(local_backend):
    docs = [{"doc_id": "a", "title": "Card", "text": "It has not arrived."}]
    first = chunk_documents(docs, ChunkSpec(200, 32), local_backend)
    again = chunk_documents(docs, ChunkSpec(200, 32), local_backend)
    assert len(first) == 1 and first == again
    assert first[0]["text"] == "Card\n\nIt has not arrived."
    changed = chunk_documents(
        [docs[0] | {"text": "It arrived."}], ChunkSpec(200, 32), local_backend
    )
    assert changed[0]["chunk_id"] != first[0]["chunk_id"]


def test_bad_chunk_spec_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        ChunkSpec(size=10, overlap=10)


def test_real_issues_never_give_a_chunk_over_the_configured_size(local_backend, hf_issues):
    docs = [{"doc_id": r["id"], "title": r["title"], "text": r["text"]} for r in hf_issues[:300]]
    rows = chunk_documents(docs, ChunkSpec(size=200, overlap=32), local_backend)
    assert {r["doc_id"] for r in rows} == {d["doc_id"] for d in docs}
    counts = local_backend.count_tokens([r["text"] for r in rows])
    assert max(counts) <= 200
    assert counts == [r["token_count"] for r in rows]
