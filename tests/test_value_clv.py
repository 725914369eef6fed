import pytest

from crm.clv import clv_class, discounted_value, dwyer_clv, median_threshold, quantile_threshold


def test_dwyer_sum_discounts_each_period_margin_by_its_own_year_from_t_zero():
    # (100 - 50) / 1.1^0 + (200 - 100) / 1.1^1 = 50 + 90.9091 = 140.9091
    assert discounted_value([100, 200], [50, 100], 0.1) == pytest.approx(140.9091, abs=1e-4)


def test_textbook_example_margins_of_400_for_three_years_at_ten_percent():
    # 400 + 400 / 1.1 + 400 / 1.21 + 400 / 1.331 = 400 + 363.64 + 330.58 + 300.53
    assert round(dwyer_clv(1000, 600, retention=1.0, discount_rate=0.1, horizon=3), 2) == 1394.74


def test_worked_example_three_years_at_80_percent_retention_and_10_percent_discount():
    # margin 400; r = 0.8, i = 0.1, T = 3:
    #   t=0: 400                       = 400
    #   t=1: 400 * 0.8   / 1.1         = 290.9091
    #   t=2: 400 * 0.64  / 1.21        = 211.5702
    #   t=3: 400 * 0.512 / 1.331       = 153.8693
    #   CLV = 1056.3486
    clv = dwyer_clv(1000, 600, retention=0.8, discount_rate=0.1, horizon=3)
    assert clv == pytest.approx(1056.3486, abs=1e-4)


def test_full_retention_and_no_discount_is_margin_times_periods():
    # t = 0..5 is six periods
    assert dwyer_clv(100, 40, retention=1.0, discount_rate=0.0, horizon=5) == pytest.approx(360)


def test_a_customer_certain_to_leave_has_only_this_periods_margin():
    assert dwyer_clv(1000, 100, retention=0.0) == 900.0


def test_retention_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="retention"):
        dwyer_clv(100, 0, retention=1.2)


@pytest.mark.parametrize(
    ("current", "potential", "expected"),
    [(150, 2000, "vip"), (50, 2000, "improve"), (150, 500, "maintain"), (50, 500, "basic"),
     (0, 0, "abandon"), (-20, 0, "abandon")],
)
def test_current_vs_potential_value_matrix(current, potential, expected):
    # lines: current value 100, potential value 1000
    assert clv_class(current, potential, 100, 1000) == expected


def test_abandon_means_unprofitable_not_below_the_line():
    assert clv_class(1, 1, current_threshold=100, potential_threshold=1000) == "basic"
    assert clv_class(5, 5, 100, 1000, abandon_max=10) == "abandon"


def test_absolute_floor_keeps_a_small_value_low_in_a_poor_base():
    assert clv_class(50, 50, 10, 10) == "vip"
    assert clv_class(50, 50, 10, 10, high_min=100) == "basic"


def test_value_exactly_at_the_median_counts_as_high():
    assert clv_class(100, 1000, current_threshold=100, potential_threshold=1000) == "vip"


def test_zero_value_is_never_high_even_when_the_median_is_zero():
    assert clv_class(0, 0, current_threshold=0, potential_threshold=0) == "abandon"
    assert clv_class(0, 5, current_threshold=0, potential_threshold=0) == "improve"


def test_median_threshold_of_an_even_base_is_the_midpoint():
    assert median_threshold([2400, 400, 0, 10]) == 205
    assert median_threshold([]) == 0.0
    assert quantile_threshold([0, 10, 20, 30, 40], 0.75) == 30
