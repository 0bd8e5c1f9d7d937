"""Small, exact statistics for comparing two error ratios (pure, standard library only).

Used by correlation (is the new revision worse than the one it replaced?) and by the gate (is the
service worse on ``kubernetes`` than on ``legacy``?).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Proportion:
    """``bad`` events out of ``total``."""

    bad: int
    total: int

    @property
    def ratio(self) -> float:
        return self.bad / self.total if self.total else 0.0


@dataclass(frozen=True)
class TwoProportionTest:
    """One-sided two-proportion z-test (pooled variance) of H1: ``a.ratio > b.ratio``.

    ``z`` is the standardised difference, ``p_value`` the one-sided tail probability; with no
    events on either side, or no variance (no errors at all, or nothing but errors), ``z`` is 0 and
    ``p_value`` 1 (nothing to conclude).
    """

    a: Proportion
    b: Proportion
    z: float
    p_value: float

    @property
    def ratio_of_ratios(self) -> float:
        """``a.ratio / b.ratio``; infinite when ``b`` had no errors and ``a`` had some."""
        if self.b.ratio == 0:
            return math.inf if self.a.ratio > 0 else 1.0
        return self.a.ratio / self.b.ratio


def two_proportion_z(a: Proportion, b: Proportion) -> TwoProportionTest:
    """Test whether ``a`` has a higher error ratio than ``b``."""
    if a.total <= 0 or b.total <= 0:
        return TwoProportionTest(a, b, 0.0, 1.0)
    pooled = (a.bad + b.bad) / (a.total + b.total)
    var = pooled * (1.0 - pooled) * (1.0 / a.total + 1.0 / b.total)
    if var <= 0.0:
        return TwoProportionTest(a, b, 0.0, 1.0)
    z = (a.ratio - b.ratio) / math.sqrt(var)
    return TwoProportionTest(a, b, z, 0.5 * math.erfc(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class StratifiedTest:
    """Cochran-Mantel-Haenszel test of H1: ``a`` fails more than ``b`` *within* strata (one-sided), with
    the Mantel-Haenszel estimate of the ratio of their error ratios. Comparing two revisions minute
    by minute, a revision that served more of the minutes when everything failed is not made to look
    worse: only differences at the same time count."""

    z: float
    p_value: float
    ratio_of_ratios: float  # inf when ``b`` had no errors in the strata where ``a`` had some
    strata: int  # strata where both had requests


def mantel_haenszel(strata: Sequence[tuple[Proportion, Proportion]]) -> StratifiedTest:
    """Test whether ``a`` has a higher error ratio than ``b`` over strata ``(a_i, b_i)`` (those where
    either side has no requests are left out)."""
    observed = expected = variance = num = den = 0.0
    used = 0
    for a, b in strata:
        n1, n2 = a.total, b.total
        if n1 <= 0 or n2 <= 0:
            continue
        used += 1
        n = n1 + n2
        m1 = a.bad + b.bad
        observed += a.bad
        expected += n1 * m1 / n
        if n > 1:
            variance += n1 * n2 * m1 * (n - m1) / (n * n * (n - 1))
        num += a.bad * n2 / n
        den += b.bad * n1 / n
    rr = num / den if den > 0 else (math.inf if num > 0 else 1.0)
    if variance <= 0.0:
        return StratifiedTest(0.0, 1.0, rr, used)
    z = (observed - expected) / math.sqrt(variance)
    return StratifiedTest(z, 0.5 * math.erfc(z / math.sqrt(2.0)), rr, used)


def fisher_exact_greater(a: Proportion, b: Proportion) -> float:
    """One-sided p-value of Fisher's exact test of H1: ``a.ratio > b.ratio``.

    Conditional on the margins of the 2x2 table (``a.total``, ``b.total`` and the errors of both
    together), ``a.bad`` follows a hypergeometric distribution under H0; the p-value is
    ``P(X >= a.bad)``. Exact at any count, so it stays valid where the z-test's normal approximation
    does not (a handful of errors). 1.0 when either side has no events (nothing to conclude).

    Cost: the tail is summed from ``a.bad`` outwards and stops once the terms no longer change the
    sum (they fall off geometrically past the mode), so it is a few hundred terms even for millions
    of events. Relative accuracy about 1e-9 (log-gamma of large arguments).
    """
    for p in (a, b):
        if p.total < 0 or not 0 <= p.bad <= p.total:
            raise ValueError(f"not a proportion: {p.bad} of {p.total}")
    n1, n2 = a.total, b.total
    if n1 == 0 or n2 == 0:
        return 1.0
    bad = a.bad + b.bad
    n = n1 + n2
    lo, hi = max(0, bad - n2), min(bad, n1)
    x = a.bad
    if x <= lo:
        return 1.0
    good = n - bad

    def log_pmf(k: int) -> float:
        return (_log_comb(bad, k) + _log_comb(good, n1 - k)) - _log_comb(n, n1)

    mode = (n1 + 1) * (bad + 1) // (n + 2)
    if x > mode:
        # Upper tail x..hi: terms decrease from x on.
        term = math.exp(log_pmf(x))
        total = term
        k = x
        while k < hi and term > total * 1e-17:
            term *= (bad - k) * (n1 - k) / ((k + 1) * (good - n1 + k + 1))
            total += term
            k += 1
        return min(1.0, total)
    # x at or below the mode: 1 - P(X <= x - 1), whose terms decrease from x - 1 downwards.
    term = math.exp(log_pmf(x - 1))
    total = term
    k = x - 1
    while k > lo and term > total * 1e-17:
        term *= k * (good - n1 + k) / ((bad - k + 1) * (n1 - k + 1))
        total += term
        k -= 1
    return min(1.0, max(0.0, 1.0 - total))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def wilson_interval(p: Proportion, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for ``p.ratio`` at ``confidence`` (0 < confidence < 1).

    Unlike the textbook ``ratio +- z * se`` it never leaves [0, 1] and does not collapse to a point
    at 0 errors (0 of 20 gives [0, 0.161] at 95%). ``(0.0, 1.0)`` when there are no events.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if p.total <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    n = p.total
    r = p.ratio
    z2n = z * z / n
    centre = (r + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(r * (1.0 - r) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # At 0 (or all) errors a bound is exactly 0 (or 1); the subtraction would leave a rounding crumb.
    low = 0.0 if p.bad == 0 else max(0.0, centre - half)
    high = 1.0 if p.bad == p.total else min(1.0, centre + half)
    return low, high
