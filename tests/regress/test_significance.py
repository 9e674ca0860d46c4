"""Welch's t-test, the Student t tail and Mann-Whitney U against reference values.

Oracles:
- Student t critical values, two-sided: NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.2
  ("Critical values of the Student's t distribution"): the tabulated t (3 decimals) gives p = 0.05 or 0.01.
- Closed forms: df = 1 (Cauchy) p = 1 - 2/pi atan|t|; df = 2 p = 1 - |t| / sqrt(2 + t^2); and
  I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b, I_x(1/2, 1/2) = 2/pi asin(sqrt x).
- Welch: the worked example 1 of Wikipedia's "Welch's t-test" article (samples A1, A2 of 15 values each):
  t = 2.46 (A2 - A1), Welch-Satterthwaite df = 24.99, p = 0.021.
- Mann-Whitney: completely separated 5 vs 5 samples, worked by hand (U = 25, mu = 12.5,
  sigma^2 = 25 * 11 / 12, z = (12.5 - 0.5) / sigma = 2.5067, p = 0.01219); a sample with ties whose p-value was
  computed with scipy.stats.mannwhitneyu(b, a, method="asymptotic") (scipy 1.17.1) and hard-coded here.
"""

import math
import random

import pytest

from blkfleet.regress.significance import betainc, mann_whitney, ranks, t_sf2, welch


@pytest.mark.parametrize("t, df, p", [
    (12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05), (2.228, 10, 0.05), (2.086, 20, 0.05),
    (2.042, 30, 0.05), (3.169, 10, 0.01), (2.845, 20, 0.01), (63.657, 1, 0.01), (1.812, 10, 0.10),
])
def test_t_tail_matches_the_nist_table(t, df, p):
    assert t_sf2(t, df) == pytest.approx(p, abs=3e-4 * max(p / 0.05, 0.2))
    assert t_sf2(-t, df) == t_sf2(t, df)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0, 1000.0])
def test_t_tail_closed_forms(t):
    assert t_sf2(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12, abs=1e-15)
    assert t_sf2(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10, abs=1e-15)


def test_t_tail_edges():
    assert t_sf2(math.inf, 5) == 0.0
    assert t_sf2(0.0, 7.5) == 1.0
    assert t_sf2(1.959964, 1e7) == pytest.approx(0.05, abs=1e-5)  # large df: the normal distribution
    with pytest.raises(ValueError):
        t_sf2(1.0, 0)


@pytest.mark.parametrize("x", [0.0, 1e-9, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0])
def test_incomplete_beta_closed_forms(x):
    for a in (0.5, 1.0, 3.0, 40.0):
        assert betainc(a, 1.0, x) == pytest.approx(x ** a, rel=1e-12, abs=1e-300)
        exact = -math.expm1(a * math.log1p(-x)) if x < 1 else 1.0  # 1 - (1 - x)^a without cancellation
        assert betainc(1.0, a, x) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert betainc(0.5, 0.5, x) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), rel=1e-12, abs=1e-15)


def test_incomplete_beta_symmetry():
    for a, b, x in [(2.5, 7.0, 0.3), (100.0, 0.5, 0.99), (0.3, 20.0, 0.01)]:
        assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, abs=1e-13)


A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_textbook_example():
    r = welch(A1, A2)
    assert r.statistic == pytest.approx(2.46, abs=0.005)
    assert r.df == pytest.approx(24.99, abs=0.005)
    assert r.p == pytest.approx(0.021, abs=0.0005)
    assert welch(A2, A1).statistic == pytest.approx(-r.statistic)


def test_welch_degenerate_samples():
    assert welch([5.0, 5.0, 5.0], [5.0, 5.0]).p == 1.0
    assert welch([5.0, 5.0, 5.0], [6.0, 6.0]).p == 0.0
    with pytest.raises(ValueError):
        welch([1.0], [1.0, 2.0])


def test_mann_whitney_hand_computed():
    r = mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert r.statistic == 25
    sigma = math.sqrt(25 * 11 / 12)
    assert r.p == pytest.approx(math.erfc((12.5 - 0.5) / sigma / math.sqrt(2)), rel=1e-12)
    assert r.p == pytest.approx(0.01219, abs=1e-5)
    assert mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).statistic == 0


def test_mann_whitney_ties():
    values, ties = ranks([3, 1, 3, 2, 3])
    assert values == [4.0, 1.0, 4.0, 2.0, 4.0] and ties == [3]
    a = [1, 2, 2, 3, 3, 4]
    b = [2, 3, 3, 4, 5, 5, 6]
    r = mann_whitney(a, b)
    # by hand: ranks of a+b: 1 ->1, 2 x3 -> 3, 3 x4 -> 6.5, 4 x2 -> 9.5, 5 x2 -> 11.5, 6 -> 13
    # R_b = 3 + 6.5 * 2 + 9.5 + 11.5 * 2 + 13 = 61.5, U_b = 61.5 - 28 = 33.5
    assert r.statistic == 33.5
    n = 13
    var = 6 * 7 / 12 * ((n + 1) - (3 * 3 * 3 - 3 + 4 ** 3 - 4 + 2 * (2 ** 3 - 2)) / (n * (n - 1)))
    assert r.p == pytest.approx(math.erfc((abs(33.5 - 21) - 0.5) / math.sqrt(var) / math.sqrt(2)), rel=1e-12)
    assert r.p == pytest.approx(0.079559, abs=5e-6)  # scipy.stats.mannwhitneyu(b, a, method="asymptotic")
    assert mann_whitney([1, 1], [1, 1, 1]).p == 1.0


def test_against_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(30):
        a = [round(rng.gauss(10, 2), 1) for _ in range(rng.randint(2, 20))]
        b = [round(rng.gauss(11, 3), 1) for _ in range(rng.randint(2, 20))]
        ref = stats.ttest_ind(b, a, equal_var=False)
        assert welch(a, b).p == pytest.approx(ref.pvalue, rel=1e-8)
        assert mann_whitney(a, b).p == pytest.approx(stats.mannwhitneyu(b, a, method="asymptotic").pvalue,
                                                     rel=1e-9)


@pytest.mark.parametrize("value", [1902.9, 0.1, 7.79, 1e-7])
def test_equal_samples_are_equal(value):
    """Samples of one value, of different sizes: p 1 and no spread (the sum of n copies over n used to differ
    from the value in its last bit: p 0.083 for two identical samples of 1902.9)."""
    from blkfleet.stats import mean, variance

    a, b = [value] * 9, [value] * 3
    assert mean(a) == mean(b) == value and variance(a) == variance(b) == 0.0
    assert welch(a, b).p == 1.0
