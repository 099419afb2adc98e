"""Delivery (unit): STATE is released in input order, only past accepted records."""

from __future__ import annotations

import itertools
import threading
import typing as t

import pytest

from target_monk.errors import DeliveryFailedError
from target_monk.run.delivery import Batch, Delivery
from testkit.processes import wait_until

KEYS = (f"key-{n}" for n in itertools.count())
"""A new idempotency key for every event the tests make."""


class ScriptedSend:
    """A send() whose batches finish only when the test says so."""

    def __init__(self) -> None:
        self.release: dict[int, threading.Event] = {}
        self.fail: set[int] = set()
        self.started = threading.Semaphore(0)

    def __call__(self, batch: Batch) -> None:
        gate = self.release.setdefault(batch.number, threading.Event())
        self.started.release()
        assert gate.wait(5)
        if batch.number in self.fail:
            raise RuntimeError(f"batch {batch.number} refused")

    def finish(self, number: int) -> None:
        self.release.setdefault(number, threading.Event()).set()


class SinkLikeDelivery(Delivery[str]):
    """A Delivery with the buffers the sinks would keep, one per holder name."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffers: dict[str, list] = {}


def make(
    max_in_flight: int = 4,
) -> tuple[SinkLikeDelivery, ScriptedSend, list[dict], threading.Event]:
    send = ScriptedSend()
    written: list[dict] = []
    wrote = threading.Event()

    def write(state: dict) -> None:
        written.append(state)
        wrote.set()

    return SinkLikeDelivery(send, write, max_in_flight), send, written, wrote


def receive(delivery: SinkLikeDelivery, holder: str, count: int) -> None:
    """As a stream buffer does: take on a run of records, then say how many."""
    events = delivery.buffers.setdefault(holder, [])
    events.extend({"idempotencyKey": next(KEYS)} for _ in range(count))
    delivery.add(holder, count)


def send(delivery: SinkLikeDelivery, holder: str) -> None:
    delivery.submit(holder, delivery.buffers.pop(holder), holder)


def test_later_batch_finishing_first_does_not_release_state() -> None:
    delivery, send_, written, _ = make()
    receive(delivery, "a", 2)
    send(delivery, "a")
    delivery.state_received({"s": 1})
    receive(delivery, "a", 2)
    send(delivery, "a")
    delivery.state_received({"s": 2})
    send_.finish(2)
    wait_until(lambda: delivery.events_accepted == 2)
    assert written == []
    send_.finish(1)
    wait_until(lambda: written)
    assert written == [{"s": 2}]


def test_records_still_buffered_in_another_stream_hold_the_state() -> None:
    delivery, send_, written, _ = make()
    receive(delivery, "b", 1)  # stream b buffers one record
    receive(delivery, "a", 3)
    send(delivery, "a")
    delivery.state_received({"s": 1})
    send_.finish(1)
    wait_until(lambda: delivery.events_accepted == 3)
    assert written == []
    send(delivery, "b")
    send_.finish(2)
    delivery.finish()
    assert written == [{"s": 1}]


def test_state_before_a_buffer_is_not_held_by_it() -> None:
    delivery, send_, written, _ = make()
    receive(delivery, "a", 1)
    send(delivery, "a")
    delivery.state_received({"s": 1})
    receive(delivery, "b", 5)
    send_.finish(1)
    wait_until(lambda: written)
    assert written == [{"s": 1}]


def test_failed_batch_stops_every_later_state_and_raises() -> None:
    delivery, send_, written, _ = make()
    for number in (1, 2, 3):
        receive(delivery, "a", 1)
        send(delivery, "a")
        delivery.state_received({"s": number})
    send_.fail.add(2)
    send_.finish(3)
    send_.finish(2)
    send_.finish(1)
    with pytest.raises(DeliveryFailedError, match="batch 2 refused"):
        delivery.finish()
    assert written == [{"s": 1}]
    with pytest.raises(DeliveryFailedError):
        delivery.state_received({"s": 4})


def test_submit_blocks_past_max_in_flight_plus_one_ready_then_fails_fast() -> None:
    delivery, send_, _, _ = make(max_in_flight=1)
    for _ in range(2):  # one being posted, one ready for the next free sender
        receive(delivery, "a", 1)
        send(delivery, "a")
    send_.fail.add(1)
    receive(delivery, "a", 1)
    result: list[BaseException] = []

    def third_submit() -> None:
        try:
            send(delivery, "a")
        except DeliveryFailedError as exc:
            result.append(exc)

    thread = threading.Thread(target=third_submit)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()  # waiting for a slot
    send_.finish(1)
    thread.join(5)
    assert result
    assert delivery.batches_submitted == 2
    send_.finish(2)


def test_holders_blocking_states() -> None:
    delivery, send_, written, _ = make()
    receive(delivery, "a", 2)
    receive(delivery, "b", 1)
    assert delivery.holders_blocking_states() == []
    delivery.state_received({"s": 1})
    assert sorted(delivery.holders_blocking_states()) == ["a", "b"]
    send(delivery, "b")
    assert delivery.holders_blocking_states() == ["a"]
    receive(delivery, "b", 1)  # after the STATE: does not hold it back
    assert delivery.holders_blocking_states() == ["a"]
    send(delivery, "a")
    send(delivery, "b")
    send_.finish(1)
    send_.finish(2)
    send_.finish(3)
    delivery.finish()
    assert written == [{"s": 1}]


def test_same_position_states_keep_the_newest_and_no_duplicates() -> None:
    delivery, send_, written, _ = make()
    delivery.state_received({"s": 0})
    delivery.state_received({"s": 0})
    receive(delivery, "a", 1)
    delivery.state_received({"s": 1})
    delivery.state_received({"s": 2})
    send(delivery, "a")
    send_.finish(1)
    delivery.finish()
    assert written == [{"s": 0}, {"s": 2}]
