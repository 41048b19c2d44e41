import pytest

from semsearch.core.fusion import rrf, weighted


def test_rrf_rewards_agreement_between_lists():
    fused = rrf([["a", "b", "x"], ["d", "b", "y"]])
    ids = [item for item, _ in fused]
    assert ids[0] == "b"  # 2nd in both lists beats 1st in only one
    scores = dict(fused)
    assert scores["b"] == pytest.approx(2 / 62)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["y"] == pytest.approx(1 / 63)
    assert set(ids) == {"a", "b", "d", "x", "y"}


def test_weighted_extremes_reproduce_one_list():
    vec = {"a": 0.9, "b": 0.5, "c": 0.1}
    kw = {"c": 12.0, "d": 3.0}
    assert [i for i, _ in weighted(vec, kw, 1.0)][:2] == ["a", "b"]
    assert [i for i, _ in weighted(vec, kw, 0.0)][0] == "c"


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="w must be"):
        weighted({}, {}, 1.5)
    with pytest.raises(ValueError, match="k0 must be"):
        rrf([["a"]], k0=0)
