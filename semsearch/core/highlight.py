"""Where a query's words occur in a passage, so a page or a terminal can mark them."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to be worth marking; the keyword index ignores them for ranking too.
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have how i in is it its my of on or that the this to"
    " was what when where which who why will with you your".split()
)


def query_terms(query: str) -> frozenset[str]:
    """The query's words worth marking: lower-cased, without stop words."""
    return frozenset(w for w in (m.lower() for m in _WORD.findall(query)) if w not in _STOPWORDS)


def term_spans(query: str, text: str) -> tuple[tuple[int, int], ...]:
    """(start, end) character spans of `text` words that are query terms (whole words, any case).

    A word also matches when one is a prefix of the other of at least 4 characters ("refund"
    marks "refunds"), the way an analyst reads a match, without a stemmer's surprises.
    """
    terms = query_terms(query)
    if not terms:
        return ()
    spans = []
    for match in _WORD.finditer(text):
        word = match.group().lower()
        if word in terms or any(_shares_stem(word, term) for term in terms):
            spans.append(match.span())
    return tuple(spans)


def _shares_stem(word: str, term: str) -> bool:
    shorter, longer = sorted((word, term), key=len)
    return len(shorter) >= 4 and longer.startswith(shorter) and len(longer) - len(shorter) <= 3
