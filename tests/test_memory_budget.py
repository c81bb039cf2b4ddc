"""MemoryBudget: a server-wide byte budget with a bounded, cancellable, first-come-first-served wait."""

from __future__ import annotations

import threading
import time

import pytest

from server.core.cancellation import CancelToken, run_with_token
from server.core.errors import Cancelled, LimitExceeded
from server.memory_budget import MemoryBudget, describe_bytes


def _in_thread(function, *args):
    """Starts function(*args) in a thread; returns (thread, outcome dict filled with 'value' or 'error')."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_reservations_add_up_and_release_on_exit():
    budget = MemoryBudget(1000, max_waiting=0, max_wait_seconds=0)
    with budget.reserve(600, "items[0]") as first:
        assert budget.used == 600 and first.nbytes == 600
        with budget.reserve(400, "items[1]"):
            assert budget.used == 1000
        assert budget.used == 600
    assert budget.used == 0 and budget.limit == 1000


def test_releasing_twice_frees_once():
    budget = MemoryBudget(1000, max_waiting=0, max_wait_seconds=0)
    held = budget.reserve(300, "a")
    other = budget.reserve(300, "b")
    held.release()
    held.release()
    assert budget.used == 300
    other.release()


def test_more_than_the_whole_budget_is_refused_at_once_naming_item_estimate_and_budget():
    budget = MemoryBudget(2 * 1024 * 1024, max_waiting=8, max_wait_seconds=60)
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as refused:
        budget.reserve(3 * 1024 * 1024, "items[7]")
    assert time.monotonic() - started < 1
    message = str(refused.value)
    assert "items[7]" in message and "3.0 MiB" in message and "2.0 MiB" in message
    assert "--max-decode-memory" in message
    with pytest.raises(LimitExceeded, match="items\\[7\\]"):
        budget.try_reserve(3 * 1024 * 1024, "items[7]")


def test_try_reserve_never_waits():
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=60)
    held = budget.try_reserve(80, "a")
    assert held is not None and budget.used == 80
    assert budget.try_reserve(30, "b") is None
    assert budget.try_reserve(20, "c") is not None
    assert budget.used == 100


def test_a_waiting_reservation_proceeds_when_memory_is_released():
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=10)
    held = budget.reserve(80, "first")
    thread, outcome = _in_thread(budget.reserve, 50, "second")
    _wait_until(lambda: budget.waiting == 1)
    assert "value" not in outcome
    held.release()
    thread.join(5)
    assert outcome["value"].nbytes == 50 and budget.used == 50
    outcome["value"].release()


def test_too_many_waiting_are_refused_naming_the_budget():
    budget = MemoryBudget(100, max_waiting=1, max_wait_seconds=10)
    held = budget.reserve(100, "first")
    thread, _ = _in_thread(budget.reserve, 10, "second")
    _wait_until(lambda: budget.waiting == 1)
    with pytest.raises(LimitExceeded, match=r"items\[2\].*--max-decode-memory.*1 calls already wait"):
        budget.reserve(10, "items[2]")
    held.release()
    thread.join(5)


def test_no_waiting_allowed_refuses_at_once_when_full():
    budget = MemoryBudget(100, max_waiting=0, max_wait_seconds=10)
    with budget.reserve(100, "first"), pytest.raises(LimitExceeded, match="items\\[1\\]"):
        budget.reserve(1, "items[1]")


def test_the_wait_is_bounded_in_time():
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=0.2)
    with budget.reserve(100, "first"):
        started = time.monotonic()
        with pytest.raises(LimitExceeded, match=r"items\[3\]: waited 0.2 s.*--max-decode-memory"):
            budget.reserve(10, "items[3]")
        assert 0.15 < time.monotonic() - started < 2
    assert budget.waiting == 0 and budget.used == 0


def test_cancelling_the_call_stops_its_wait():
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=30)
    held = budget.reserve(100, "first")
    token = CancelToken()
    thread, outcome = _in_thread(run_with_token, token, budget.reserve, 10, "items[0]")
    _wait_until(lambda: budget.waiting == 1)
    started = time.monotonic()
    token.cancel()
    thread.join(5)
    assert time.monotonic() - started < 1
    assert isinstance(outcome["error"], Cancelled)
    assert budget.waiting == 0 and budget.used == 100
    held.release()


def test_an_already_cancelled_call_does_not_wait():
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=30)
    token = CancelToken()
    token.cancel()
    with budget.reserve(100, "first"), pytest.raises(Cancelled):
        run_with_token(token, budget.reserve, 10, "items[0]")


def test_waiters_are_served_first_come_first_served():
    """A large reservation is not starved by small ones arriving after it."""
    budget = MemoryBudget(100, max_waiting=4, max_wait_seconds=10)
    held = budget.reserve(60, "first")
    big_thread, big = _in_thread(budget.reserve, 90, "big")
    _wait_until(lambda: budget.waiting == 1)
    small_thread, small = _in_thread(budget.reserve, 20, "small")
    _wait_until(lambda: budget.waiting == 2)
    assert budget.try_reserve(10, "jumper") is None  # fits, but would jump the queue
    time.sleep(0.05)
    assert "value" not in small  # 60 + 20 fits, but the big one came first
    held.release()
    big_thread.join(5)
    assert big["value"].nbytes == 90
    time.sleep(0.05)
    assert "value" not in small  # 90 + 20 does not fit
    big["value"].release()
    small_thread.join(5)
    assert small["value"].nbytes == 20
    small["value"].release()
    assert budget.used == 0


def test_many_threads_never_exceed_the_budget():
    budget = MemoryBudget(1000, max_waiting=64, max_wait_seconds=30)
    peak = [0]
    lock = threading.Lock()

    def work(size: int) -> None:
        with budget.reserve(size, "item"):
            with lock:
                peak[0] = max(peak[0], budget.used)
            time.sleep(0.001)

    threads = [_in_thread(work, 100 + 37 * (i % 20))[0] for i in range(64)]
    for thread in threads:
        thread.join(10)
    assert 0 < peak[0] <= 1000 and budget.used == 0 and budget.waiting == 0


@pytest.mark.parametrize("arguments", [(0, 1, 1.0), (-5, 1, 1.0), (100, -1, 1.0), (100, 1, -0.5)], ids=str)
def test_invalid_settings_are_refused(arguments):
    with pytest.raises(ValueError):
        MemoryBudget(*arguments)


def test_bytes_are_described_in_readable_units():
    assert describe_bytes(512) == "512 bytes"
    assert describe_bytes(1536) == "1.5 KiB"
    assert describe_bytes(3 * 1024 * 1024) == "3.0 MiB"
    assert describe_bytes(1024**3) == "1.00 GiB"
