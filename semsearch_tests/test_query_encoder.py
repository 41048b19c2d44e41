"""The query encoder: the local model on ONNX Runtime gives the model's own vectors, and falls
back to PyTorch (with a warning) when it cannot be built."""

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from semsearch.core.query_encoder import OnnxQueryEncoder, local_query_embedder


def test_onnx_query_vectors_are_the_models_own(local_backend, banking77, tmp_path):
    texts = [r["text"] for r in banking77[:40:2]] + ["x", "a " * 400]  # one past 256 tokens
    encoder = OnnxQueryEncoder(local_backend, tmp_path)
    got = np.vstack([encoder.embed(t) for t in texts])
    expected = local_backend.embed(texts).vectors
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert (got * expected).sum(axis=1).min() >= 0.99999
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1 and not list(tmp_path.glob("*.partial"))
    written = exported[0].stat().st_mtime_ns
    OnnxQueryEncoder(local_backend, tmp_path)  # the next process reuses the export
    assert exported[0].stat().st_mtime_ns == written


def test_query_embedder_falls_back_to_pytorch(local_backend, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the export cannot be written under a file
    with caplog.at_level(logging.WARNING, logger="semsearch.core.query_encoder"):
        embed = local_query_embedder(local_backend, blocked)
    assert "stays on PyTorch" in caplog.text
    vector = embed("my card has not arrived")
    np.testing.assert_allclose(
        vector, local_backend.embed(["my card has not arrived"]).vectors[0], atol=1e-6
    )


def test_queries_embedded_on_many_threads_get_their_own_vectors(local_backend, banking77, tmp_path):
    """A server embeds queries on many threads at once through one encoder."""
    texts = [r["text"] for r in banking77[:64]]
    encoder = OnnxQueryEncoder(local_backend, tmp_path)
    alone = [encoder.embed(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(encoder.embed, texts))
    for mine, expected in zip(together, alone, strict=True):
        np.testing.assert_allclose(mine, expected, atol=1e-6)
