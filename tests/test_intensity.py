"""RestartIntensity is OTP's sliding window (supervisor.erl add_restart/1)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisors.intensity import RestartIntensity


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(intensity, period):
    clock = Clock()
    return RestartIntensity(intensity, period, clock), clock


def test_within_intensity_is_allowed():
    ri, clock = make(3, 5)
    for t in (0, 1, 2):
        clock.now = t
        assert ri.add_restart()
    clock.now = 3
    assert not ri.add_restart()  # the 4th within 5 s


def test_window_slides_with_each_restart():
    ri, clock = make(2, 2.0)
    for t, ok in [(0, True), (1.4, True), (2.4, True), (3.8, True), (4.0, False)]:
        clock.now = t
        assert ri.add_restart() is ok, t


def test_not_a_fixed_window():
    # A window reset every `period` from the first restart would allow this.
    ri, clock = make(2, 2.0)
    for t, ok in [(0, True), (1.4, True), (2.4, True), (3.0, False)]:
        clock.now = t
        assert ri.add_restart() is ok, t


def test_boundary_is_inclusive_like_otp():
    # OTP keeps restarts R with R >= Now - Period.
    ri, clock = make(1, 5)
    clock.now = 0
    assert ri.add_restart()
    clock.now = 5
    assert not ri.add_restart()
    ri2, clock2 = make(1, 5)
    clock2.now = 0
    assert ri2.add_restart()
    clock2.now = 5.001
    assert ri2.add_restart()


def test_zero_intensity_never_restarts():
    ri, _ = make(0, 5)
    assert not ri.add_restart()


def test_invalid():
    with pytest.raises(ValueError):
        RestartIntensity(-1, 5)
    with pytest.raises(ValueError):
        RestartIntensity(1, 0)


@given(st.integers(0, 5), st.floats(0.5, 10),
       st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=30))
def test_matches_a_direct_count(intensity, period, gaps):
    ri, clock = make(intensity, period)
    times = []
    for gap in gaps:
        clock.now += gap
        times.append(clock.now)
        allowed = ri.add_restart()
        in_window = [t for t in times if t >= clock.now - period]
        assert allowed == (len(in_window) <= intensity)
        if not allowed:
            break
