import pytest

from streams.core.model import DAY, HOUR, MINUTE, Severity, burn_factor, default_policy, format_duration, parse_duration


@pytest.mark.parametrize(
    ("severity", "long_s", "short_s", "factor"),
    [
        pytest.param(Severity.PAGE, HOUR, 5 * MINUTE, 14.4, id="30d SLO pages at 14.4x over 1h and 5m"),
        pytest.param(Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0, id="30d SLO pages at 6x over 6h and 30m"),
        pytest.param(Severity.TICKET, DAY, 2 * HOUR, 3.0, id="30d SLO tickets at 3x over 1d and 2h"),
        pytest.param(Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0, id="30d SLO tickets at 1x over 3d and 6h"),
    ],
)
def test_workbook_policy_for_a_30_day_slo(severity: Severity, long_s: int, short_s: int, factor: float) -> None:
    windows = {(w.severity, w.long_s, w.short_s): w.factor for w in default_policy(30 * DAY).windows}
    assert windows[(severity, long_s, short_s)] == pytest.approx(factor)


def test_burn_factor_is_budget_share_times_windows_ratio() -> None:
    assert burn_factor(budget_fraction=0.02, slo_window_s=30 * DAY, long_window_s=HOUR) == pytest.approx(14.4)
    # A 7-day SLO spends 2% in 1h at 0.02 * 168 = 3.36x.
    assert burn_factor(budget_fraction=0.02, slo_window_s=7 * DAY, long_window_s=HOUR) == pytest.approx(3.36)


def test_policy_drops_windows_longer_than_a_short_slo_window() -> None:
    assert all(w.long_s <= 2 * DAY for w in default_policy(2 * DAY).windows)


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * DAY), ("1h30m", 5400), ("45s", 45), ("2w", 14 * DAY)])
def test_durations_round_trip(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "h", "5x", "1.5h", "-1h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
