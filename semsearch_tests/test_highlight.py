"""Query words are marked in a passage as an analyst reads a match."""

from semsearch.core.highlight import term_spans


def test_whole_words_and_close_forms_are_marked_but_not_stop_words_or_fragments():
    text = "Refunds for the card: my refund never arrived; cardinal sins."
    marked = [text[a:b] for a, b in term_spans("the refund of my card", text)]
    assert marked == ["Refunds", "card", "refund"]


def test_a_query_of_stop_words_marks_nothing():
    assert term_spans("what is the", "what is the answer") == ()
