"""How the tests compare model outputs computed apart: what must be exact, and how close the rest must be.

The model computes in float32 (unit roundoff u = 2**-24, about 6e-8). Its dense layers are dot
products, and TensorFlow's CPU kernels sum them in an order that depends on the batch (how rows are
blocked for the vector units, a short tail row group handled without FMA), on the number of threads
splitting the work, and on the instruction set the machine has (AVX2, AVX-512). So the same record
scored in a batch of 7 and in a batch of 65,536, by another reader or in another process, may get a
probability that differs in its last bits; which records differ changes from run to run.

How far apart they can be: reordering a sum of n float32 terms moves it by at most about n * u times
the sum of the terms' magnitudes (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1). The
model's widest sum has 55 terms (3 dense inputs and 13 embeddings of 4, models/model.py); with
activations and weights of order one that is about 55 * 6e-8 * 4, roughly 1e-5 relative at worst per
layer, a few times 1e-6 on the logit after three layers, and the sigmoid's slope is at most 1/4: about
1e-6 on a probability in the worst case. Measured on 5,000 sample records: at most 1.2e-7 between one
call of 5,000 and calls of 1 or 7 records (most records differ, by one or two units in the last place),
1.5e-8 between calls of 256 and 4,096, with TensorFlow's default threads and with one. PROBABILITY_ATOL
is ten times the bound and eighty times the measured worst, and still three orders of magnitude below
what any real fault causes (a feature read from the wrong column, rows paired with the wrong keys,
another model version: 1e-2 and more).

What stays exact: the keys, the counts, and every label whose probability is farther than the
tolerance from the threshold (a label is `probability >= threshold`; within the tolerance of the
threshold, either label is right). Values read back from storage that no model recomputed (a night
left untouched by a failed run) are compared exactly, not with these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

PROBABILITY_ATOL = 1e-5


def assert_close_probabilities(got, want, what: str = "") -> None:
    """Two arrays of probabilities of the same records in the same order, computed apart."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: {got.shape} probabilities, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=0, atol=PROBABILITY_ATOL, err_msg=what)


def assert_same_scores(got: Mapping[Any, float], want: Mapping[Any, float], what: str = "") -> None:
    """{key: probability} of one night scored twice: exactly the same keys, probabilities within tolerance."""
    assert got.keys() == want.keys(), f"{what}: keys differ: {sorted(set(got) ^ set(want))[:10]}"
    keys = sorted(want)
    assert_close_probabilities([got[k] for k in keys], [want[k] for k in keys], what)


def assert_same_predictions(
    got: Iterable[tuple], want: Iterable[tuple], threshold: float, probability: int, label: int | None = None
) -> None:
    """Rows of the same predictions from two runs, in the same order: every column exact but the
    probability (within tolerance) and the label (exact unless its probability is within the tolerance
    of the threshold). `probability` and `label` are the columns' positions in a row."""
    got, want = list(got), list(want)
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    volatile = {probability} | ({label} if label is not None else set())
    for g, w in zip(got, want, strict=True):
        exact = [i for i in range(len(w)) if i not in volatile]
        assert [g[i] for i in exact] == [w[i] for i in exact], f"{g} != {w}"
        assert abs(g[probability] - w[probability]) <= PROBABILITY_ATOL, f"{g} != {w}"
        if label is not None and abs(w[probability] - threshold) > PROBABILITY_ATOL:
            assert g[label] == w[label], f"label of {g} != {w}, its probability away from the threshold {threshold}"


# A drift value (feature_drift.value) is a distance between two distributions, computed from statistics
# of the night: for the score, of the probabilities above. It moves continuously with them, and one
# probability moved by PROBABILITY_ATOL moves a bin's share by at most that over the bin's width; with
# the narrowest of the baseline's score bins about 1e-2 wide, 1e-3 of a share at most, and far less in
# practice. DRIFT_ATOL is a thousandth of the 0.1 threshold that flags a feature.
DRIFT_ATOL = 1e-4


def assert_same_drift(got: Iterable[tuple], want: Iterable[tuple]) -> None:
    """feature_drift rows of two runs over the same records, in the same order, the value last."""
    got, want = list(got), list(want)
    assert [g[:-1] for g in got] == [w[:-1] for w in want], "different drift rows"
    np.testing.assert_allclose([g[-1] for g in got], [w[-1] for w in want], rtol=0, atol=DRIFT_ATOL)
