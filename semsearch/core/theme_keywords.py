"""Theme keywords by class-based TF-IDF, sparse end to end and streamed in batches.

The vocabulary is fitted once on the fit sample, bounded by `max_terms` and a minimum document
frequency; each batch of documents is then counted against it (a sparse matrix) and added to a
(themes x vocabulary) sparse sum. Memory follows the number of themes times the bounded
vocabulary, never the corpus. A document counts each term it holds once, and its terms are
weighted to sum to one, so a theme's words (and the vocabulary) are those of its documents, not
of its longest document.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

WEB_STOP_WORDS = frozenset({"http", "https", "www", "com", "html", "org", "github"})
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"  # words, not numbers or identifiers


class KeywordCounter:
    """Accumulates per-theme term weights over batches; `keywords()` ranks them by c-TF-IDF."""

    def __init__(self, sample_texts: Sequence[str], themes: int, max_terms: int, min_df: int):
        self.themes = themes
        self._vectorizer: CountVectorizer | None = CountVectorizer(
            stop_words=list(ENGLISH_STOP_WORDS | WEB_STOP_WORDS),
            token_pattern=TOKEN_PATTERN,
            ngram_range=(1, 2),
            max_features=max_terms,
            min_df=min(min_df, max(1, len(sample_texts))),
            binary=True,  # presence: a document repeating a word 500 times still votes once
            dtype=np.float32,
        )
        try:
            self._vectorizer.fit(sample_texts)
            self.words = self._vectorizer.get_feature_names_out()
        except ValueError:  # no text, or only stop words / rare words
            self._vectorizer, self.words = None, np.array([], dtype=object)
        self._totals = sp.csr_matrix((themes + 1, len(self.words)), dtype=np.float64)

    def add(self, texts: Sequence[str], theme_rows: np.ndarray) -> None:
        """Count a batch; `theme_rows` is each text's theme index, `themes` for outliers."""
        if self._vectorizer is None or not len(texts):
            return
        counts = self._vectorizer.transform(texts)
        per_doc = np.asarray(counts.sum(axis=1)).ravel()
        weights = sp.diags(1.0 / np.maximum(per_doc, 1.0))
        membership = sp.csr_matrix(
            (np.ones(len(texts)), (theme_rows, np.arange(len(texts)))),
            shape=(self.themes + 1, len(texts)),
        )
        self._totals = self._totals + membership @ (weights @ counts)

    def keywords(self, top: int) -> list[list[str]]:
        """Top terms of each theme (and, last, of the outliers), by class-based TF-IDF."""
        totals = self._totals.tocsr()
        if not len(self.words):
            return [[] for _ in range(self.themes + 1)]
        per_class = np.asarray(totals.sum(axis=1)).ravel()
        tf = sp.diags(1.0 / np.maximum(per_class, 1e-12)) @ totals
        per_term = np.asarray(totals.sum(axis=0)).ravel()
        average = totals.sum() / max(1, self.themes + 1)
        idf = np.log1p(average / np.maximum(per_term, 1e-12))
        scores = (tf @ sp.diags(idf)).tocsr()
        return [
            _distinct(self.words, scores.indices[a:b], scores.data[a:b], top)
            for a, b in zip(scores.indptr[:-1], scores.indptr[1:], strict=True)
        ]


def _distinct(words: np.ndarray, columns: np.ndarray, scores: np.ndarray, top: int) -> list[str]:
    """Best-scoring terms, skipping a term whose words a better term already shows."""
    picked: list[str] = []
    for i in np.lexsort((columns, -scores)):
        if scores[i] <= 0 or len(picked) == top:
            break
        term = str(words[columns[i]])
        shown = {w for p in picked for w in p.split()}
        if not set(term.split()) <= shown:
            picked.append(term)
    return picked
