"""Two-sample significance tests, stdlib only: Welch's t-test and the Mann-Whitney U test.

- ``betainc(a, b, x)``: the regularized incomplete beta function I_x(a, b), by its continued fraction evaluated
  with the modified Lentz method (Numerical Recipes, 3rd ed., section 6.4), using the symmetry
  I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
- ``t_sf2(t, df)``: the two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` (real, > 0) degrees of
  freedom: I_{df / (df + t^2)}(df / 2, 1 / 2).
- ``welch(a, b)``: Welch's unequal-variances t-test. t = (mean_b - mean_a) / sqrt(s_a^2/n_a + s_b^2/n_b) and the
  Welch-Satterthwaite degrees of freedom; two-sided p-value from the t distribution.
- ``mann_whitney(a, b)``: the Mann-Whitney U test (Wilcoxon rank-sum), normal approximation with tie correction
  and continuity correction (as scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True)).
"""

import math
from typing import NamedTuple

from ..stats import mean, variance

EPS = 1e-15
FPMIN = 1e-300
MAX_ITER = 500


def _betacf(a, b, x):
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < FPMIN:
        d = FPMIN
    d = 1.0 / d
    h = d
    for m in range(1, MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))  # even step
        d = 1.0 + aa * d
        d = FPMIN if abs(d) < FPMIN else d
        c = 1.0 + aa / c
        c = FPMIN if abs(c) < FPMIN else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))  # odd step
        d = 1.0 + aa * d
        d = FPMIN if abs(d) < FPMIN else d
        c = 1.0 + aa / c
        c = FPMIN if abs(c) < FPMIN else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError("betainc: a and b must be > 0")
    if not 0.0 <= x <= 1.0:
        raise ValueError("betainc: x must be within [0, 1]")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t, df):
    """Two-sided p-value P(|T| >= |t|) for Student's t with ``df`` > 0 degrees of freedom (df may be real)."""
    if not df > 0:
        raise ValueError("t distribution: df must be > 0")
    if math.isinf(t):
        return 0.0
    if math.isnan(t):
        return float("nan")
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def norm_sf2(z):
    """Two-sided p-value P(|Z| >= |z|) of the standard normal distribution."""
    return math.erfc(abs(z) / math.sqrt(2.0))


class TestResult(NamedTuple):
    test: str
    statistic: float  # t (b - a) or U of sample b
    df: float  # degrees of freedom (Welch) or None
    p: float  # two-sided


def welch(a, b):
    """Welch's t-test of sample ``b`` against sample ``a`` (two-sided); needs at least 2 values in each.

    If both samples have zero variance, p is 1 when their means are equal and 0 otherwise (t is infinite).
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ValueError("welch: needs at least two values in each sample")
    ma, mb = mean(a), mean(b)
    va, vb = variance(a) / na, variance(b) / nb
    se2 = va + vb
    if se2 == 0.0:
        if ma == mb:
            return TestResult("welch", 0.0, float(na + nb - 2), 1.0)
        return TestResult("welch", math.copysign(math.inf, mb - ma), float(na + nb - 2), 0.0)
    t = (mb - ma) / math.sqrt(se2)
    den = (va * va / (na - 1) if va else 0.0) + (vb * vb / (nb - 1) if vb else 0.0)
    df = se2 * se2 / den
    return TestResult("welch", t, df, t_sf2(t, df))


def ranks(values):
    """1-based ranks with ties given their average rank, and the tie groups' sizes (> 1)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j + 2) / 2.0
        for k in range(i, j + 1):
            out[order[k]] = avg
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return out, ties


def mann_whitney(a, b, continuity=True):
    """Mann-Whitney U test of ``b`` against ``a`` (two-sided), normal approximation with tie correction.

    U is the statistic of ``b``: the number of pairs (x in a, y in b) with y > x, ties counting one half.
    sigma^2 = n_a n_b / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))) over the tie groups' sizes t.
    """
    na, nb = len(a), len(b)
    if na < 1 or nb < 1:
        raise ValueError("mann_whitney: needs at least one value in each sample")
    n = na + nb
    r, ties = ranks(list(a) + list(b))
    u = sum(r[na:]) - nb * (nb + 1) / 2.0
    mu = na * nb / 2.0
    tie_term = sum(t ** 3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    var = na * nb / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return TestResult("mann-whitney", u, None, 1.0)
    dev = abs(u - mu) - (0.5 if continuity else 0.0)
    z = max(dev, 0.0) / math.sqrt(var)
    return TestResult("mann-whitney", u, None, min(1.0, norm_sf2(z)))


TESTS = {"welch": welch, "mann-whitney": mann_whitney}
