"""Statistics for comparing two error ratios, against values computed by hand and textbook examples."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.stats import Proportion, fisher_exact_greater, mantel_haenszel, two_proportion_z, wilson_interval


def exact_fisher_greater(a: Proportion, b: Proportion) -> Fraction:
    """The same tail, in exact rational arithmetic: an oracle independent of log-gamma and of the
    early stop. P(X >= a.bad), X hypergeometric: a.total drawn from a.total + b.total, of which
    a.bad + b.bad are errors."""
    errors, n = a.bad + b.bad, a.total + b.total
    tail = sum(math.comb(errors, k) * math.comb(n - errors, a.total - k)
               for k in range(a.bad, min(errors, a.total) + 1))
    return Fraction(tail, math.comb(n, a.total))


# ---- two-proportion z-test --------------------------------------------------------------------------


def test_z_for_30_in_1000_against_10_in_1000_matches_the_pooled_formula_by_hand() -> None:
    # By hand, pooled formula:
    #   ratios 30/1000 = 0.03 and 10/1000 = 0.01, difference 0.02
    #   pooled p = (30 + 10) / (1000 + 1000) = 0.02
    #   variance = p (1 - p) (1/1000 + 1/1000) = 0.02 * 0.98 * 0.002 = 0.0000392
    #   standard error = sqrt(0.0000392) = 0.0062610
    #   z = 0.02 / 0.0062610 = 3.1944
    #   one-sided p = 1 - Phi(3.1944) = 0.000701 (normal table: Phi(3.19) = 0.99929, Phi(3.20) = 0.99931)
    t = two_proportion_z(Proportion(30, 1000), Proportion(10, 1000))
    assert t.z == pytest.approx(3.1944, abs=1e-4)
    assert t.p_value == pytest.approx(0.000701, abs=1e-6)
    assert t.ratio_of_ratios == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(Proportion(0, 0), Proportion(5, 100), id="no events on one side concludes nothing"),
        pytest.param(Proportion(0, 100), Proportion(0, 100), id="no errors anywhere concludes nothing"),
        pytest.param(Proportion(100, 100), Proportion(50, 50), id="nothing but errors concludes nothing"),
    ],
)
def test_z_without_variance_is_zero_with_p_one(a: Proportion, b: Proportion) -> None:
    t = two_proportion_z(a, b)
    assert (t.z, t.p_value) == (0.0, 1.0)


# ---- Fisher's exact test ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Fisher's lady tasting tea: 3 of her 4 "milk first" cups right, 1 of the 4 others called
        # "milk first": P = (C(4,3) C(4,1) + C(4,4) C(4,0)) / C(8,4) = (16 + 1) / 70.
        pytest.param(Proportion(3, 4), Proportion(1, 4), 17 / 70, id="the lady tasting tea gives 17 over 70"),
        # Wikipedia's "Fisher's exact test" example (dieting by sex): 9 of 12 women against 1 of 12 men;
        # the observed table has P = 0.001346076 and the one more extreme 0.000033652.
        pytest.param(Proportion(9, 12), Proportion(1, 12), 0.001379728,
                     id="the dieting example gives 0.001379728"),
        pytest.param(Proportion(0, 10), Proportion(3, 10), 1.0, id="no errors on the first side gives 1"),
        pytest.param(Proportion(5, 5), Proportion(0, 5), 1 / 252, id="all of one side against none is 1 in C(10,5)"),
        pytest.param(Proportion(0, 0), Proportion(1, 10), 1.0, id="no events on the first side gives 1"),
    ],
)
def test_fisher_exact_against_known_values(a: Proportion, b: Proportion, expected: float) -> None:
    assert fisher_exact_greater(a, b) == pytest.approx(expected, rel=1e-6)


def test_fisher_exact_for_30_in_1000_against_10_in_1000_is_exact_and_more_careful_than_z() -> None:
    a, b = Proportion(30, 1000), Proportion(10, 1000)
    p = fisher_exact_greater(a, b)
    assert p == pytest.approx(float(exact_fisher_greater(a, b)), rel=1e-9)
    assert p == pytest.approx(0.0010042, rel=1e-4)
    # Conditioning on the margins makes it conservative: a larger p-value than the z-test's 0.000701.
    assert p > two_proportion_z(a, b).p_value


def test_fisher_exact_with_a_million_events_per_side_stays_accurate() -> None:
    # 0.13% against 0.10%: z = 6.2; the exact tail is about 2e-10.
    p = fisher_exact_greater(Proportion(1300, 1_000_000), Proportion(1000, 1_000_000))
    assert 1e-10 < p < 5e-10
    assert fisher_exact_greater(Proportion(1000, 1_000_000), Proportion(1000, 1_000_000)) == pytest.approx(
        0.509, abs=1e-3)


def test_fisher_exact_rejects_what_is_not_a_proportion() -> None:
    with pytest.raises(ValueError, match="not a proportion"):
        fisher_exact_greater(Proportion(-1, 10), Proportion(1, 10))
    with pytest.raises(ValueError, match="not a proportion"):
        fisher_exact_greater(Proportion(1, 10), Proportion(11, 10))


@st.composite
def tables(draw: st.DrawFn) -> tuple[Proportion, Proportion]:
    n1, n2 = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    return Proportion(draw(st.integers(0, n1)), n1), Proportion(draw(st.integers(0, n2)), n2)


@given(tables())
def test_fisher_exact_equals_the_exact_rational_tail(t: tuple[Proportion, Proportion]) -> None:
    a, b = t
    assert fisher_exact_greater(a, b) == pytest.approx(float(exact_fisher_greater(a, b)), rel=1e-9, abs=1e-300)


@given(tables())
def test_more_errors_on_the_first_side_never_raise_the_p_value(t: tuple[Proportion, Proportion]) -> None:
    # Coupling argument: one more error among a's events moves the hypergeometric count up by at
    # most one, so P(X' >= x + 1) <= P(X >= x). The gate's "more errors never undo a rollback" rests on it.
    a, b = t
    if a.bad == a.total:
        return
    worse = Proportion(a.bad + 1, a.total)
    assert fisher_exact_greater(worse, b) <= fisher_exact_greater(a, b) + 1e-12


@given(tables())
def test_fisher_p_value_is_a_probability(t: tuple[Proportion, Proportion]) -> None:
    assert 0.0 <= fisher_exact_greater(*t) <= 1.0


# ---- Wilson score interval --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "total", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17,
        # table II, method 3 (score method without continuity correction), 95%.
        pytest.param(81, 263, 0.2553, 0.3662, id="81 of 263 gives 0.2553 to 0.3662"),
        pytest.param(15, 148, 0.0624, 0.1605, id="15 of 148 gives 0.0624 to 0.1605"),
        pytest.param(0, 20, 0.0, 0.1611, id="0 of 20 gives 0 to 0.1611"),
        pytest.param(1, 29, 0.0061, 0.1718, id="1 of 29 gives 0.0061 to 0.1718"),
    ],
)
def test_wilson_interval_matches_newcombe(bad: int, total: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(Proportion(bad, total))
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_interval_without_events_is_everything_and_rejects_a_bad_level() -> None:
    assert wilson_interval(Proportion(0, 0)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(Proportion(1, 10), confidence=1.0)


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_ratio_and_widens_with_confidence(bt: tuple[int, int]) -> None:
    p = Proportion(*bt)
    lo95, hi95 = wilson_interval(p)
    lo99, hi99 = wilson_interval(p, confidence=0.99)
    assert 0.0 <= lo99 <= lo95 <= p.ratio <= hi95 <= hi99 <= 1.0


def test_mantel_haenszel_on_one_stratum_is_the_pooled_z_test_scaled_by_n_minus_1_over_n() -> None:
    a, b = Proportion(30, 1000), Proportion(10, 1000)
    got = mantel_haenszel([(a, b)])
    n = a.total + b.total
    assert got.z == pytest.approx(two_proportion_z(a, b).z * math.sqrt((n - 1) / n), rel=1e-9)
    assert got.ratio_of_ratios == pytest.approx(3.0) and got.strata == 1


def test_mantel_haenszel_compares_within_strata_where_the_pooled_test_is_fooled_by_timing() -> None:
    """The new revision served mostly in the minute everything failed: pooled it looks 7x worse, minute
    by minute it fails exactly as often as the old one."""
    calm = (Proportion(1, 1000), Proportion(9, 9000))
    outage = (Proportion(450, 9000), Proportion(50, 1000))
    pooled = two_proportion_z(Proportion(451, 10000), Proportion(59, 10000))
    assert pooled.p_value < 1e-6 and pooled.ratio_of_ratios > 7
    got = mantel_haenszel([calm, outage, (Proportion(0, 0), Proportion(5, 10))])
    assert got.ratio_of_ratios == pytest.approx(1.0) and got.p_value > 0.3 and got.strata == 2


def test_mantel_haenszel_rate_ratio_matches_the_formula_by_hand() -> None:
    strata = [(Proportion(20, 1000), Proportion(5, 500)), (Proportion(8, 200), Proportion(6, 600))]
    num = 20 * 500 / 1500 + 8 * 600 / 800
    den = 5 * 1000 / 1500 + 6 * 200 / 800
    got = mantel_haenszel(strata)
    assert got.ratio_of_ratios == pytest.approx(num / den) and got.z > 0 and got.p_value < 0.01
    assert mantel_haenszel([]).p_value == 1.0 and mantel_haenszel([]).strata == 0
