"""Agreement coefficients against published worked examples and scikit-learn:
Krippendorff's α through the krippendorff package, the κs of our own."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from models_runtime.stats import agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the
# nominal example: 4 observers, 12 units, missing values; published α = 0.743.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
# The same paper's first example: binary data, two observers, ten units, no
# missing data; published α = 0.095.
KRIPPENDORFF_2011_BINARY = {"Ben": [0, 1, 0, 0, 0, 0, 0, 0, 1, 0], "Gerry": [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]}
# Fleiss (1971) as reproduced on Wikipedia's "Fleiss' kappa": 10 subjects,
# 14 raters, 5 categories; published κ = 0.210 (P̄ = 0.378, P̄e = 0.213).
FLEISS_1971 = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def test_krippendorff_alpha_matches_the_published_nominal_example_with_missing_data():
    units = [{r: row[u] for r, row in enumerate(KRIPPENDORFF_2011) if row[u] is not None} for u in range(12)]
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    # Unit 12 has a single value and is not pairable: dropping it changes nothing.
    assert agreement.krippendorff_alpha_nominal(units[:11]) == pytest.approx(0.743, abs=5e-4)
    # Labels are compared for equality only: renaming them changes nothing.
    names = {1: "first", 2: "second", 3: "tie", 4: "both bad", 5: "skip"}
    renamed = [{r: names[v] for r, v in unit.items()} for unit in units]
    assert agreement.krippendorff_alpha_nominal(renamed) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_matches_the_published_binary_example_with_two_observers():
    units = [{name: values[u] for name, values in KRIPPENDORFF_2011_BINARY.items()} for u in range(10)]
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(0.095, abs=5e-4)
    # Two observers, every unit judged by both: Fleiss' κ on the same data is
    # Scott's π, which α corrects by n / (n − 1) for its 20 values.
    stats = agreement.agreement_stats(units)
    assert 1 - stats.fleiss_kappa == pytest.approx((1 - stats.krippendorff_alpha) * 20 / 19)


def test_krippendorff_alpha_is_none_without_pairable_units_or_without_variation():
    assert agreement.krippendorff_alpha_nominal([]) is None
    assert agreement.krippendorff_alpha_nominal([{1: "first"}, {2: "tie"}]) is None
    assert agreement.krippendorff_alpha_nominal([{1: "tie", 2: "tie"}, {1: "tie", 3: "tie"}]) is None
    # Perfect agreement with some variation is 1; systematic disagreement is below 0.
    assert agreement.krippendorff_alpha_nominal([{1: "a", 2: "a"}, {1: "b", 2: "b"}]) == pytest.approx(1.0)
    assert agreement.krippendorff_alpha_nominal([{1: "a", 2: "b"}, {1: "b", 2: "a"}]) < 0


def test_fleiss_kappa_matches_fleiss_1971_and_refuses_unequal_rater_counts():
    assert agreement.fleiss_kappa(np.array(FLEISS_1971)) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError, match="same number of raters"):
        agreement.fleiss_kappa(np.array([[2, 0], [1, 2]]))
    assert agreement.fleiss_kappa(np.array([[3, 0], [3, 0]])) is None  # one category: undefined


def test_cohen_kappa_matches_scikit_learn_and_agreement_stats_averages_qualifying_pairs():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 40)
    raters = {a: np.where(rng.random(40) < 0.75, truth, rng.integers(0, 3, 40)) for a in "xyz"}
    for a, b in combinations("xyz", 2):
        ours = agreement.cohen_kappa(list(raters[a]), list(raters[b]))
        assert ours == pytest.approx(cohen_kappa_score(raters[a], raters[b]), abs=1e-12)
    # z rated only the first 4 items: its pairs are under min_shared=5 and left out.
    units = [{a: int(raters[a][i]) for a in "xyz" if a != "z" or i < 4} for i in range(40)]
    stats = agreement.agreement_stats(units, min_shared=5)
    assert stats.cohen_pairs == 1
    assert stats.cohen_kappa_mean == pytest.approx(cohen_kappa_score(raters["x"], raters["y"]))
    # Fleiss' κ uses the modal rater count (2, on 36 units), α uses every unit.
    assert (stats.fleiss_raters, stats.fleiss_units, stats.units, stats.annotators) == (2, 36, 40, 3)
    assert stats.ratings == 84


def test_percent_agreement_and_undefined_coefficients():
    stats = agreement.agreement_stats([{1: "first", 2: "first", 3: "second"}, {1: "tie", 2: "tie"}, {1: "first"}])
    # Unit 1: 1 of 3 rater pairs agree; unit 2: 1 of 1; the lone rating is ignored.
    assert stats.percent_agreement == pytest.approx((1 / 3 + 1) / 2)
    assert stats.units == 2 and stats.ratings == 5
    same = agreement.agreement_stats([{1: "first", 2: "first"}] * 6)
    assert same.percent_agreement == 1.0
    assert same.krippendorff_alpha is None and same.fleiss_kappa is None and same.cohen_kappa_mean is None
    empty = agreement.agreement_stats([])
    assert not empty.has_data and empty.krippendorff_alpha is None
