"""Embed one search query at a time, fast: the local model's network on ONNX Runtime.

A query is a few words and is embedded alone, while a user waits. On PyTorch that costs ~18 ms
on one of this machine's cores, mostly framework overhead per layer; the same network exported
to ONNX and run by ONNX Runtime takes ~6.5 ms and gives the same vector (cosine >= 0.9999999
against PyTorch's on Banking77 messages; see benchmarks/bench_serve.py). Documents keep being
embedded by sentence-transformers in large batches, where PyTorch is efficient.

The export is made once per model from the local weights (no network) and kept on disk; every
encoder proves itself at load against the PyTorch model on a few sentences, and anything that
does not match (another pooling, a failed export) falls back to PyTorch with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from semsearch.core.embedding import EmbeddingError, LocalBackend, validate_vectors

log = logging.getLogger(__name__)

QueryEmbedder = Callable[[str], np.ndarray]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Sentences the ONNX encoder must embed as PyTorch does before it answers a query.
_PROOF = ("my card has not arrived yet", "Why was I charged a fee on my top-up?", "x")
_MIN_COSINE = 0.99999


def backend_query_embedder(backend) -> QueryEmbedder:
    """Any backend's own path for one text (an API backend, or the PyTorch fallback)."""

    def embed(text: str) -> np.ndarray:
        result = backend.embed([text])
        if not result.indices:
            raise EmbeddingError(f"could not embed the query: {result.failures[0].message}")
        return result.vectors[0]

    return embed


def local_query_embedder(backend: LocalBackend, cache_dir: Path) -> QueryEmbedder:
    """The ONNX Runtime encoder of `backend`'s model, or PyTorch's when that is not possible."""
    try:
        encoder = OnnxQueryEncoder(backend, cache_dir)
        encoder.prove(backend)
    except Exception as exc:  # noqa: BLE001 - any failure here costs speed, never a result
        log.warning("query embedding stays on PyTorch (ONNX Runtime not usable: %s)", exc)
        return backend_query_embedder(backend)
    return encoder.embed


class OnnxQueryEncoder:
    """A mean-pooled, normalised sentence-transformers model's network on ONNX Runtime."""

    def __init__(self, backend: LocalBackend, cache_dir: Path):
        import onnxruntime

        model = backend._model
        kinds = [type(module).__name__ for module in model]
        pooling = model[1] if len(model) > 1 else None
        if kinds[:2] != ["Transformer", "Pooling"] or _pooling_mode(pooling) != "mean":
            raise ValueError(f"the model's modules {kinds} are not Transformer + mean Pooling")
        self.tokenizer = model.tokenizer
        self._tokenizer_lock = threading.Lock()
        self.max_length = int(model.max_seq_length)
        self.dimension = backend.dimension
        path = exported_network(model, backend.model_path, cache_dir)
        options = onnxruntime.SessionOptions()
        # One thread per query: a server runs queries in parallel, one per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, text: str) -> np.ndarray:
        # A fast tokenizer called with truncation settings may reconfigure itself, which raises
        # ("Already borrowed") if another thread uses it at that moment; tokenizing takes ~0.1 ms.
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                [text], truncation=True, max_length=self.max_length, return_tensors="np"
            )
        feeds = {name: encoded[name].astype(np.int64) for name in _INPUTS}
        tokens = self.session.run(None, feeds)[0]
        mask = encoded["attention_mask"][..., None].astype(np.float32)
        pooled = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        vector = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        validate_vectors(vector, 1, self.dimension)
        return vector[0].astype(np.float32)

    def prove(self, backend: LocalBackend) -> None:
        reference = backend.embed(list(_PROOF)).vectors
        cosine = min(float(self.embed(s) @ r) for s, r in zip(_PROOF, reference, strict=True))
        if cosine < _MIN_COSINE:
            raise ValueError(f"its vectors differ from PyTorch's (cosine {cosine:.6f})")


def exported_network(model, model_path: str, cache_dir: Path) -> Path:
    """The model's transformer as an ONNX file under `cache_dir`, exported on first use."""
    path = cache_dir / f"{_model_fingerprint(model_path)}.onnx"
    if path.exists():
        return path
    import torch

    log.info("exporting the query encoder of %s to ONNX (once per model)", model_path)
    network = _last_hidden_state(model[0].auto_model.eval())
    sample = model.tokenizer(["a sample query"], return_tensors="pt")
    cache_dir.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "tokens"}
    handle, partial = tempfile.mkstemp(dir=cache_dir, suffix=".onnx.partial")
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes, by the page
            torch.onnx.export(
                network,
                tuple(sample[name] for name in _INPUTS),
                partial,
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in (*_INPUTS, "last_hidden_state")},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: stable for BERT-like networks
            )
        os.replace(partial, path)  # a reader never sees half a file
    finally:
        Path(partial).unlink(missing_ok=True)
    return path


def _last_hidden_state(transformer):
    """The transformer as a module of positional inputs with one output (what export takes)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return LastHiddenState()


def _model_fingerprint(model_path: str) -> str:
    """Names the export by the model's files (their names, sizes and times), not its path."""
    digest = hashlib.sha256()
    for file in sorted(Path(model_path).rglob("*")):
        if file.is_file():
            stat = file.stat()
            name = file.relative_to(model_path)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _pooling_mode(pooling) -> str | None:
    return pooling.get_config_dict().get("pooling_mode")
