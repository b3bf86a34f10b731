"""Backoff strategies: pure, deterministic without a random source, bounded with one."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.bayeux._backoff import Backoff, ConstantBackoff, ExponentialBackoff
from sfstream.exceptions import InvalidArgumentError


def test_constant() -> None:
    backoff = ConstantBackoff(2.5)
    assert [backoff.compute(n) for n in (-1, 0, 1, 2, 100)] == [0.0, 0.0, 2.5, 2.5, 2.5]
    assert ConstantBackoff().compute(1) == 1.0
    assert ConstantBackoff(0).compute(5) == 0


def test_constant_refuses_a_negative_delay() -> None:
    with pytest.raises(
        ValueError, match=r"^delay must be a finite number of seconds, not negative$"
    ):
        ConstantBackoff(-0.1)


def test_strategies_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConstantBackoff().delay = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExponentialBackoff().initial = 2  # type: ignore[misc]
    assert ConstantBackoff(1) == ConstantBackoff(1)
    # The random source takes no part in equality or repr (it may be a bound method).
    assert ExponentialBackoff(random=lambda: 0.1) == ExponentialBackoff(random=lambda: 0.9)
    assert "random" not in repr(ExponentialBackoff())


def test_both_satisfy_the_protocol() -> None:
    strategies: list[Backoff] = [ConstantBackoff(), ExponentialBackoff()]
    assert [strategy.compute(0) for strategy in strategies] == [0.0, 0.0]


def test_exponential_growth_and_cap_without_jitter() -> None:
    backoff = ExponentialBackoff(initial=0.5, factor=2.0, maximum=5.0, jitter=0.0)
    assert [backoff.compute(n) for n in range(8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.compute(-3) == 0.0


def test_exponential_default_is_deterministic() -> None:
    backoff = ExponentialBackoff()
    # Default: initial 0.5, factor 2, maximum 30, jitter 0.5 with a random that returns 0.5.
    expected = [0.375, 0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5]
    assert [backoff.compute(n) for n in range(1, 9)] == expected
    assert [ExponentialBackoff().compute(n) for n in range(1, 9)] == expected


def test_exponential_jitter_uses_the_injected_random() -> None:
    values = itertools.cycle([0.0, 0.999, 0.25])
    calls: list[float] = []

    def random() -> float:
        value = next(values)
        calls.append(value)
        return value

    backoff = ExponentialBackoff(initial=4.0, factor=1.0, maximum=10.0, jitter=0.5, random=random)
    assert backoff.compute(1) == 4.0
    assert backoff.compute(1) == pytest.approx(4.0 * (1 - 0.5 * 0.999))
    assert backoff.compute(1) == 3.5
    assert calls == [0.0, 0.999, 0.25]
    assert backoff.compute(0) == 0.0
    assert len(calls) == 3  # attempt 0 draws nothing


def test_full_jitter() -> None:
    backoff = ExponentialBackoff(initial=2.0, jitter=1.0, random=lambda: 0.75)
    assert backoff.compute(1) == 0.5


@pytest.mark.parametrize("attempt", [1_100, 10_000, sys.maxsize])
def test_huge_attempts_are_capped_not_overflowing(attempt: int) -> None:
    backoff = ExponentialBackoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)
    assert backoff.compute(attempt) == 30.0


def test_factor_one_stays_at_initial() -> None:
    backoff = ExponentialBackoff(initial=3.0, factor=1.0, maximum=30.0, jitter=0.0)
    assert backoff.compute(sys.maxsize) == 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -1.0}, "initial and maximum must be finite and not negative"),
        ({"maximum": -1.0}, "initial and maximum must be finite and not negative"),
        ({"factor": 0.99}, "factor must be a finite number, at least 1"),
        ({"jitter": -0.01}, "jitter must be between 0 and 1"),
        ({"jitter": 1.01}, "jitter must be between 0 and 1"),
        ({"jitter": float("nan")}, "jitter must be between 0 and 1"),
    ],
)
def test_exponential_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"^{message}$"):
        ExponentialBackoff(**kwargs)


def test_exponential_edge_values_are_accepted() -> None:
    assert ExponentialBackoff(initial=0.0, maximum=0.0, factor=1.0, jitter=0.0).compute(9) == 0.0
    assert ExponentialBackoff(jitter=1.0).jitter == 1.0


@given(
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    maximum=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    draw=st.floats(0, 1, exclude_max=True),
    attempt=st.integers(-5, 5000),
)
def test_exponential_bounds(
    initial: float, factor: float, maximum: float, jitter: float, draw: float, attempt: int
) -> None:
    backoff = ExponentialBackoff(
        initial=initial, factor=factor, maximum=maximum, jitter=jitter, random=lambda: draw
    )
    delay = backoff.compute(attempt)
    if attempt <= 0:
        assert delay == 0.0
        return
    try:
        base = min(maximum, initial * factor ** (attempt - 1))
    except OverflowError:
        base = maximum
    assert 0.0 <= delay <= base <= maximum
    assert delay >= base * (1 - jitter) - 1e-9
    if jitter < 1 and base > 1e-300:
        # Never "at once" unless the undelayed backoff itself is 0 (or so small that the
        # jittered delay underflows to 0, e.g. a cap of 5e-324 s).
        assert delay > 0


@given(st.integers(1, 200), st.floats(0, 1, exclude_max=True))
def test_exponential_is_monotonic_for_a_fixed_draw(attempt: int, draw: float) -> None:
    backoff = ExponentialBackoff(random=lambda: draw)
    assert backoff.compute(attempt) <= backoff.compute(attempt + 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": float("nan")},
        {"maximum": float("inf")},
        {"factor": float("nan")},
        {"factor": float("inf")},
    ],
)
def test_exponential_backoff_refuses_non_finite_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="finite"):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [float("nan"), float("inf")])
def test_constant_backoff_refuses_non_finite_delay(delay: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        ConstantBackoff(delay)
