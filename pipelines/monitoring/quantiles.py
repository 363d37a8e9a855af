"""A distribution read back from its quantiles: the one reading drift, the report's histograms and the
statistics' STANDARD histogram share, so that each describes the same numbers the same way."""

from __future__ import annotations

import numpy as np


def share_below(edges: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The share of values at or below each point, from equal-mass quantiles: linear between distinct
    quantiles, and a step at a repeated one (a value many records hold), whose whole mass sits at it."""
    ranks = np.linspace(0.0, 1.0, len(edges))
    unique = np.unique(edges)
    first = ranks[np.searchsorted(edges, unique, side="left")]  # the CDF just below each distinct value
    last = ranks[np.searchsorted(edges, unique, side="right") - 1]  # and at it
    points = np.asarray(points, dtype=np.float64)
    i = np.searchsorted(unique, points, side="right") - 1  # the largest distinct quantile <= point
    shares = np.zeros(len(points))
    inside = (i >= 0) & (i < len(unique) - 1)
    at = inside & (points == unique[np.clip(i, 0, None)])
    between = inside & ~at
    j = i[between]
    fraction = (points[between] - unique[j]) / (unique[j + 1] - unique[j])
    shares[between] = last[j] + fraction * (first[j + 1] - last[j])
    shares[at] = last[i[at]]
    shares[i >= len(unique) - 1] = 1.0
    return shares
