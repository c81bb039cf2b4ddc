"""The dynamic batcher with a fake batch function: joining, splitting, order, delay, errors, overload."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.batching.batch_run import abandoned_items
from server.batching.batcher import DynamicBatcher
from server.batching.buckets import length_buckets
from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS, BatchSettings
from server.core.cancellation import CancelToken, check_cancelled, run_with_token
from server.core.errors import Cancelled, ModelNotReady, Overloaded
from server.protocols.grpc_status import status_code
from server.repository.specs import model_spec


class FakeModel:
    """Multiplies by ten; records every batch; can be held at the gate to let a queue build up."""

    def __init__(self, fail_when=None) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_when = fail_when
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_when and self.fail_when(items):
            raise ValueError(f"cannot run a batch holding {sorted(items)}")
        return [x * 10 for x in items]

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


@pytest.fixture
def make_batcher():
    made = []

    def make(model, **settings) -> DynamicBatcher:
        settings.setdefault("max_batch_size", 8)
        batcher = DynamicBatcher("fake/1", model, BatchSettings(**settings))
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop(timeout=5)


def block_worker(model: FakeModel, batcher: DynamicBatcher):
    """Occupies the (single) worker with a run of [-1] so that later calls queue; returns its future."""
    model.hold()
    future = batcher.submit([-1])
    assert model.entered.wait(5)
    return future


def test_calls_queued_while_the_model_runs_join_one_batch(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model)
    first = block_worker(model, batcher)
    futures = [batcher.submit([i, i + 100]) for i in range(3)]
    model.gate.set()
    assert first.result(5) == [-10]
    assert [f.result(5) for f in futures] == [[0, 1000], [10, 1010], [20, 1020]]
    assert model.batches[1] == [0, 100, 1, 101, 2, 102]  # arrival order, one run
    stats = batcher.stats()
    assert stats.runs == 2 and stats.items == 7 and stats.batch_sizes == {1: 1, 6: 1}


def test_a_large_call_is_split_into_full_batches_and_reassembled_in_order(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, max_batch_size=4)
    assert batcher.run(list(range(10))) == [x * 10 for x in range(10)]
    assert [len(b) for b in model.batches] == [4, 4, 2]


def test_many_concurrent_callers_each_get_their_own_outputs(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, max_batch_size=16, workers=2)

    def call(n: int):
        items = [n * 1000 + k for k in range(n % 5 + 1)]
        return items, batcher.run(items)

    with ThreadPoolExecutor(32) as pool:
        for items, outputs in pool.map(call, range(200)):
            assert outputs == [x * 10 for x in items]
    assert sum(len(b) for b in model.batches) == sum(n % 5 + 1 for n in range(200))
    assert max(len(b) for b in model.batches) <= 16


def test_a_lone_item_waits_at_most_the_queue_delay(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, max_queue_delay_s=0.2)
    started = time.monotonic()
    assert batcher.run([1]) == [10]
    waited = time.monotonic() - started
    assert 0.19 <= waited < 1.5


def test_the_delay_gathers_calls_and_a_full_batch_does_not_wait(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, max_batch_size=4, max_queue_delay_s=0.3)
    started = time.monotonic()
    futures = [batcher.submit([i]) for i in range(3)]
    assert [f.result(5) for f in futures] == [[0], [10], [20]]
    assert model.batches == [[0, 1, 2]]  # the window gathered three calls into one run
    assert time.monotonic() - started >= 0.29
    started = time.monotonic()
    assert batcher.run([1, 2, 3, 4]) == [10, 20, 30, 40]  # a full batch runs at once
    assert time.monotonic() - started < 0.25


def test_preferred_batch_sizes_cut_the_queue():
    settings = BatchSettings(max_batch_size=16, preferred_batch_sizes=(4, 8))
    assert [settings.cut(n) for n in (1, 3, 4, 7, 8, 15, 40)] == [1, 3, 4, 4, 8, 8, 8]
    assert settings.target_batch_size == 8
    assert BatchSettings(max_batch_size=16).cut(40) == 16


def test_a_failed_batch_fails_every_call_in_it_and_the_batcher_keeps_serving(make_batcher):
    model = FakeModel(fail_when=lambda items: 13 in items)
    batcher = make_batcher(model)
    first = block_worker(model, batcher)
    doomed = [batcher.submit([1, 2]), batcher.submit([13]), batcher.submit([3])]
    model.gate.set()
    first.result(5)
    for future in doomed:
        with pytest.raises(ValueError, match="13"):
            future.result(5)
    assert batcher.run([4, 5]) == [40, 50]
    assert batcher.stats().failed_runs == 1


def test_a_call_split_over_runs_fails_once_and_leaves_the_queue(make_batcher):
    model = FakeModel(fail_when=lambda items: 2 in items)
    batcher = make_batcher(model, max_batch_size=2)
    with pytest.raises(ValueError):
        batcher.run([0, 1, 2, 3, 4, 5])
    assert batcher.queued_items() == 0
    assert batcher.run([7]) == [70]


def test_a_batch_function_giving_the_wrong_number_of_outputs_is_an_error(make_batcher):
    batcher = make_batcher(lambda items: [0])
    with pytest.raises(RuntimeError, match="1 outputs for 3 items"):
        batcher.run([1, 2, 3])


def test_a_full_queue_refuses_new_calls_with_overloaded(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, max_queue_items=4)
    first = block_worker(model, batcher)
    queued = batcher.submit([1, 2, 3])
    with pytest.raises(Overloaded, match="queue limit of 4") as refused:
        batcher.submit([4, 5])
    assert status_code(refused.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    accepted = batcher.submit([6])  # what still fits is accepted
    model.gate.set()
    assert first.result(5) == [-10] and queued.result(5) == [10, 20, 30] and accepted.result(5) == [60]
    assert batcher.queued_items() == 0


def test_a_cancelled_call_withdraws_its_queued_items(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model)
    first = block_worker(model, batcher)
    token = CancelToken()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(run_with_token, token, batcher.run, [7, 8])
        deadline = time.monotonic() + 5
        while batcher.queued_items() != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        token.cancel()
        with pytest.raises(Cancelled):
            waiting.result(5)
    assert batcher.queued_items() == 0
    kept = batcher.submit([9])
    model.gate.set()
    assert first.result(5) == [-10] and kept.result(5) == [90]
    assert all(7 not in batch for batch in model.batches)  # the withdrawn items never ran


class PatientModel:
    """A long run that checks for cancellation every few milliseconds, for up to 10 s; it reports which
    of its items were abandoned and returns early once `enough(abandoned)` holds."""

    def __init__(self, enough=lambda abandoned: False) -> None:
        self.entered = threading.Event()
        self.enough = enough
        self.abandoned: set[int] = set()
        self.checks = 0

    def __call__(self, items):
        self.entered.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            check_cancelled("the patient model")
            self.checks += 1
            self.abandoned = abandoned_items()
            if self.enough(self.abandoned):
                break
            time.sleep(0.005)
        return [x * 10 for x in items]


def cancellable_call(pool, batcher, items):
    """Runs batcher.run(items) on the pool under a fresh token; returns (token, future)."""
    token = CancelToken()
    return token, pool.submit(run_with_token, token, batcher.run, items)


def test_a_run_stops_when_every_call_in_it_was_cancelled(make_batcher):
    model = PatientModel()
    batcher = make_batcher(model, max_queue_delay_s=0.2)
    with ThreadPoolExecutor(2) as pool:
        calls = [cancellable_call(pool, batcher, [i]) for i in (1, 2)]
        assert model.entered.wait(5)
        started = time.monotonic()
        for token, call in calls:
            token.cancel()
            with pytest.raises(Cancelled):
                call.result(5)
        while batcher.stats().cancelled_runs == 0 and time.monotonic() < started + 5:
            time.sleep(0.01)
    stats = batcher.stats()
    assert stats.cancelled_runs == 1 and stats.failed_runs == 0
    assert time.monotonic() - started < 1  # not the 10 s the run would take
    model.enough = lambda abandoned: True
    assert batcher.run([3]) == [30]  # and the batcher keeps serving


def test_a_run_goes_on_for_the_calls_still_waiting_and_knows_which_items_left(make_batcher):
    model = PatientModel(enough=lambda abandoned: bool(abandoned))
    batcher = make_batcher(model, max_queue_delay_s=0.2)
    with ThreadPoolExecutor(2) as pool:
        leaving, left = cancellable_call(pool, batcher, [1, 2])
        deadline = time.monotonic() + 5
        while batcher.queued_items() != 2 and time.monotonic() < deadline:
            time.sleep(0.005)  # queued first: its items come first in the run
        _, staying = cancellable_call(pool, batcher, [3])
        assert model.entered.wait(5)
        leaving.cancel()
        with pytest.raises(Cancelled):
            left.result(5)
        assert staying.result(5) == [30]
    assert model.abandoned == {0, 1}  # the leaving call's two items, first in the run
    assert batcher.stats().cancelled_runs == 0


def test_items_of_different_groups_never_share_a_run(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model)
    first = block_worker(model, batcher)
    futures = [batcher.submit([i], group=i % 2) for i in range(6)]
    model.gate.set()
    first.result(5)
    assert [f.result(5) for f in futures] == [[i * 10] for i in range(6)]
    assert sorted(model.batches[1:]) == [[0, 2, 4], [1, 3, 5]]


def test_without_dynamic_batching_each_run_holds_one_call(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model, join_requests=False)
    first = block_worker(model, batcher)
    futures = [batcher.submit([i, i]) for i in range(3)]
    model.gate.set()
    first.result(5)
    assert [f.result(5) for f in futures] == [[0, 0], [10, 10], [20, 20]]
    assert model.batches[1:] == [[0, 0], [1, 1], [2, 2]]


def test_instance_count_runs_batches_concurrently(make_batcher):
    both_running = threading.Barrier(2, timeout=5)

    def meets_the_other(items):
        both_running.wait()  # only passes when two runs are inside at the same time
        return items

    batcher = make_batcher(meets_the_other, max_batch_size=1, workers=2)
    assert batcher.run([1, 2]) == [1, 2]


def test_stop_finishes_queued_work_then_refuses_new_calls(make_batcher):
    model = FakeModel()
    batcher = make_batcher(model)
    first = block_worker(model, batcher)
    queued = batcher.submit([5])
    threading.Timer(0.1, model.gate.set).start()
    batcher.stop(timeout=5)
    assert first.result(0) == [-10] and queued.result(0) == [50]
    with pytest.raises(ModelNotReady, match="shutting down"):
        batcher.submit([1])


def test_settings_come_from_config_pbtxt():
    config = text_format.Parse(
        """
        name: "m" max_batch_size: 24
        dynamic_batching { preferred_batch_size: [8, 16] max_queue_delay_microseconds: 1500
                           default_queue_policy { max_queue_size: 100 } }
        instance_group { count: 2 kind: KIND_CPU }
        """,
        mc.ModelConfig(),
    )
    settings = model_spec(config).batch_settings(32)
    assert settings == BatchSettings(24, True, (8, 16), 0.0015, 100, 2)
    plain = model_spec(mc.ModelConfig(name="p")).batch_settings(32)
    assert plain == BatchSettings(32, False, (), 0.0, DEFAULT_MAX_QUEUE_ITEMS, 1)


@pytest.mark.parametrize(
    "lengths",
    [[5], [3, 3, 3, 70], [9, 2, 40, 41, 7, 7, 8, 77, 12], list(range(1, 12)), [20] * 16],
)
def test_length_buckets_are_the_cheapest_split(lengths):
    cost = 50
    groups = length_buckets(lengths, cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))

    def total(split):
        return sum(cost + len(g) * max(lengths[i] for i in g) for g in split)

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = min(  # brute force over every way to cut the sorted order
        total([order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))])
        for r in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), r)
    )
    assert total(groups) == best


def test_short_texts_are_not_padded_to_a_long_one():
    groups = length_buckets([4, 5, 4, 77, 6, 5, 4, 5, 6, 4, 5, 6], 20)
    assert [3] in groups
