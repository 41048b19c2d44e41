"""Content-derived identity: the same content always gets the same id."""

from __future__ import annotations

import hashlib


def _digest(*parts: str, length: int = 24) -> str:
    h = hashlib.sha256()
    for part in parts:
        # Length-prefix each part so ("ab", "c") and ("a", "bc") never collide.
        data = part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:length]


def document_id_from_content(text: str, title: str | None) -> str:
    """Id for a source record that came without one."""
    return "h" + _digest(title or "", text, length=20)


def chunk_id(doc_id: str, position: int, text: str) -> str:
    return _digest(doc_id, str(position), text)


def embedding_cache_key(model_id: str, dimensions: int, text: str) -> str:
    return _digest(model_id, str(dimensions), text, length=32)
