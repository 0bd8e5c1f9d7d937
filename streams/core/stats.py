"""Small, exact statistics for comparing two error ratios (pure, standard library only).

Used by correlation (is the new revision worse than the one it replaced?) and by the gate (is the
service worse on ``kubernetes`` than on ``legacy``?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
