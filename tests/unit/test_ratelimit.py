"""Token buckets and per-user budgets (web/ratelimit.py) on a clock the test moves."""

from __future__ import annotations

import pytest

from actors.errors import RateLimited
from web.ratelimit import READ_REQUEST_ROWS, SWEEP_EVERY_SECS, RateLimiter, ReadBudget, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def limited(check, *args) -> float:
    """The ``retry_after`` a refused call names."""
    with pytest.raises(RateLimited) as refused:
        check(*args)
    assert refused.value.details == {"retry_after": round(refused.value.retry_after_secs, 3)}
    return refused.value.retry_after_secs


def test_a_bucket_allows_its_burst_then_names_the_wait():
    bucket = TokenBucket(rate=2.0, capacity=4, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.0, cost=3.0) == pytest.approx(1.5)


def test_a_bucket_refills_at_its_rate_up_to_its_capacity():
    bucket = TokenBucket(rate=2.0, capacity=4, now=0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.take(0.25) == pytest.approx(0.25), "half a token back after a quarter second"
    assert bucket.take(0.5) == 0.0
    assert [bucket.take(100.0) for _ in range(5)] == [0.0] * 4 + [pytest.approx(0.5)], "never more than the burst"


def test_a_bucket_with_no_rate_never_refills():
    bucket = TokenBucket(rate=0.0, capacity=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(1e9) == float("inf")


def test_a_debit_goes_into_debt_no_deeper_than_the_capacity():
    bucket = TokenBucket(rate=1.0, capacity=4, now=0.0)
    bucket.debit(0.0, 6)
    assert bucket.tokens == -2
    assert bucket.take(0.0) == pytest.approx(3.0), "the debt is paid off before the next token"
    bucket.debit(0.0, 100)
    assert bucket.tokens == -4


def test_the_limiter_keeps_a_bucket_per_tenant_and_user():
    clock = Clock()
    limiter = RateLimiter(rate_per_sec=1.0, burst=2, clock=clock)
    limiter.check("t1", "alice")
    limiter.check("t1", "alice")
    assert limited(limiter.check, "t1", "alice") == pytest.approx(1.0)
    limiter.check("t1", "bob")
    limiter.check("t2", "alice")
    clock.now += 1.0
    limiter.check("t1", "alice")


def test_the_limiter_forgets_idle_buckets_once_they_would_be_full():
    clock = Clock()
    limiter = RateLimiter(rate_per_sec=1.0, burst=10, clock=clock)
    limiter.check("t1", "idle")
    clock.now += SWEEP_EVERY_SECS - 1
    limiter.check("t1", "busy")
    clock.now += 2  # the sweep is due; "idle" has been untouched long enough to be full
    limiter.check("t1", "busy")
    assert set(limiter._buckets) == {("t1", "busy")}


def test_a_sweep_keeps_a_bucket_still_paying_off_debt():
    clock = Clock()
    budget = ReadBudget(rate_per_sec=0.1, burst=10, clock=clock)
    budget.charge("t1", "reader", 100)  # at -10: 200 s to be full again
    clock.now += SWEEP_EVERY_SECS + 1
    budget.admit("t1", "other")
    assert ("t1", "reader") in budget._buckets
    assert limited(budget.admit, "t1", "reader") > 0


def test_a_read_is_admitted_while_the_budget_lasts_and_pays_afterwards():
    clock = Clock()
    budget = ReadBudget(rate_per_sec=100.0, burst=50, clock=clock)
    budget.admit("t1", "alice")
    budget.charge("t1", "alice", 30)  # 10 for the request, 30 rows: 10 left
    budget.admit("t1", "alice")
    budget.charge("t1", "alice", 20)  # 30 spent from 10: 20 in debt
    wait = limited(budget.admit, "t1", "alice")
    assert wait == pytest.approx((READ_REQUEST_ROWS + 20) / 100.0), "until the debt and one request are paid"
    clock.now += wait
    budget.admit("t1", "alice")
    budget.admit("t1", "bob")


def test_a_read_budget_with_no_rate_is_off():
    budget = ReadBudget(rate_per_sec=0.0, burst=0, clock=Clock())
    budget.charge("t1", "alice", 10**9)
    budget.admit("t1", "alice")
    assert not budget._buckets
