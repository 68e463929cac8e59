"""The one comparison of an answer with the library's, for the Python tests (the Rust tests use
`ferroserve-testkit`, which behaves the same): shape first, so a lost or extra row fails; NaN
only where the library answered NaN; the worst element named with its index and both values.
"""
import numpy as np


def assert_close(what, got, want, atol=1e-5, rtol=0.0):
    """Fails unless `got` has `want`'s shape and every element is within atol + rtol * |want|."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} answered, {want.shape} expected"
    g, w = got.reshape(-1), want.reshape(-1)
    both_nan = np.isnan(g) & np.isnan(w)
    with np.errstate(invalid="ignore"):
        excess = np.abs(g - w) - (atol + rtol * np.abs(w))
    excess = np.where(both_nan, 0.0, excess)
    # NaN on one side only, or unequal infinities, is always outside.
    excess = np.where(np.isnan(excess) | (np.isinf(g) | np.isinf(w)) & (g != w), np.inf, excess)
    excess = np.where(np.isinf(g) & (g == w), 0.0, excess)
    bad = excess > 0
    if bad.any():
        i = int(np.argmax(excess))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {w.size} values outside atol {atol} + rtol {rtol}; "
            f"worst at index {i}: got {g[i]!r}, want {w[i]!r}")


def assert_same(what, got, want):
    """Fails unless the two sequences are equal element by element (lengths first)."""
    got, want = list(got), list(want)
    assert len(got) == len(want), (
        f"{what}: {len(got)} values answered, {len(want)} expected\n  got:  {got}\n  want: {want}")
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{what}: differs first at index {i}: got {g!r}, want {w!r}"

