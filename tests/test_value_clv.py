import pytest

from crm.clv import clv_class, discounted_value, dwyer_clv, median_threshold


def test_dwyer_sum_discounts_each_period_margin_by_its_own_year():
    # (100 - 50) / 1.1 + (200 - 100) / 1.1^2 = 45.4545 + 82.6446 = 128.0992
    assert discounted_value([100, 200], [50, 100], 0.1) == pytest.approx(128.0992, abs=1e-4)


def test_worked_example_three_years_at_80_percent_retention_and_10_percent_discount():
    # Q = 1000, C = 600 a year, so the margin is 400; r = 0.8, i = 0.1, T = 3:
    #   t=1: 400 * 0.8   / 1.1   = 320   / 1.1   = 290.9091
    #   t=2: 400 * 0.64  / 1.21  = 256   / 1.21  = 211.5702
    #   t=3: 400 * 0.512 / 1.331 = 204.8 / 1.331 = 153.8693
    #   CLV = 656.3486
    clv = dwyer_clv(1000, 600, retention=0.8, discount_rate=0.1, horizon=3)
    assert clv == pytest.approx(656.3486, abs=1e-4)


def test_full_retention_and_no_discount_is_margin_times_horizon():
    assert dwyer_clv(100, 40, retention=1.0, discount_rate=0.0, horizon=5) == pytest.approx(300)


def test_a_customer_certain_to_leave_has_no_lifetime_value_left():
    assert dwyer_clv(1000, 100, retention=0.0) == 0.0


def test_default_horizon_is_five_years_at_ten_percent():
    # sum of (0.8 / 1.1)^t for t = 1..5 = 0.72727 + 0.52893 + 0.38467 + 0.27976 + 0.20346
    #                                    = 2.12410, times a margin of 100
    assert dwyer_clv(300, 200, retention=0.8) == pytest.approx(212.41, abs=1e-2)


def test_retention_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="retention"):
        dwyer_clv(100, 0, retention=1.2)


@pytest.mark.parametrize(
    ("current", "potential", "expected"),
    [(150, 2000, "vip"), (50, 2000, "improve"), (150, 500, "maintain"), (50, 500, "abandon")],
)
def test_current_vs_potential_value_matrix(current, potential, expected):
    # lines: current value 100, potential value 1000
    assert clv_class(current, potential, 100, 1000) == expected


def test_value_exactly_at_the_median_counts_as_high():
    assert clv_class(100, 1000, current_threshold=100, potential_threshold=1000) == "vip"


def test_zero_value_is_never_high_even_when_the_median_is_zero():
    assert clv_class(0, 0, current_threshold=0, potential_threshold=0) == "abandon"
    assert clv_class(0, 5, current_threshold=0, potential_threshold=0) == "improve"


def test_median_threshold_of_an_even_base_is_the_midpoint():
    assert median_threshold([2400, 400, 0, 10]) == 205
    assert median_threshold([]) == 0.0
