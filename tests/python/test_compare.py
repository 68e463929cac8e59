"""The comparison helpers fail where they must (a lost row, one-sided NaN, a shape change)."""
import numpy as np

from compare import assert_close, assert_same


def test_compare_helpers_catch_what_they_must():
    assert_close("ok", [1.0, np.nan], [1.0 + 1e-6, np.nan])
    for got, want in [([1.0], [1.0, 2.0]), ([np.nan], [1.0]), ([1.0], [np.nan]),
                      ([np.inf], [1e300]), ([[1.0, 2.0]], [1.0, 2.0]), ([1.0, 2.5], [1.0, 2.0])]:
        try:
            assert_close("x", got, want, atol=1e-3)
        except AssertionError as e:
            assert "x:" in str(e)
        else:
            raise AssertionError(f"{got} vs {want} passed")
    try:
        assert_close("x", [1.0, 2.5, 3.1], [1.0, 2.0, 3.0], atol=0.05)
    except AssertionError as e:
        assert "index 1" in str(e) and "2 of 3" in str(e), e
    try:
        assert_same("labels", ["a"], ["a", "b"])
    except AssertionError as e:
        assert "1 values answered, 2 expected" in str(e)
    else:
        raise AssertionError("a lost label passed")
