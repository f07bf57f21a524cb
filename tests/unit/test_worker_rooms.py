"""The worker's loop-thread helpers on their own: the lease's stage table, the capacity token,
the renewal due-list and the failure policy. Each is tested without threads or a loop, against
the in-memory stub queue where a queue is needed."""

from __future__ import annotations

import logging
import random
from concurrent.futures import Future
from queue import SimpleQueue

import pytest

from s3sqsd.backoff import SQS_MAX_VISIBILITY_SECONDS
from s3sqsd.errors import (
    AttemptsExhaustedError,
    FetchError,
    LocalError,
    MessageFormatError,
)
from s3sqsd.metrics import Metrics
from s3sqsd.sqs import Message
from s3sqsd.worker.failures import Action, FailurePolicy
from s3sqsd.worker.inbox import Deleted, Inbox
from s3sqsd.worker.lease import Capacity, Lease, Leases, LeaseStageError, Stage
from s3sqsd.worker.renewal import Renewer
from s3sqsd.worker.settings import WorkerSettings
from s3sqsd.worker.settle import Settler
from tests.support.stub_queue import StubQueue


def lease_for(message: Message, *, received_at: float = 0.0, timeout: float = 120) -> Lease:
    return Lease(message=message, received_at=received_at, visible_until=received_at + timeout)


def a_lease(number: int = 1) -> Lease:
    return lease_for(Message(f"m{number}", f"r{number}", "{}", 1))


class TestStages:
    def test_a_download_that_succeeds_is_queued_for_delete_then_sent(self) -> None:
        lease = a_lease()
        lease.start(Future())
        lease.queue_delete(now=5.0)
        assert (lease.stage, lease.delete_queued_at) == (Stage.DELETE_QUEUED, 5.0)
        lease.send_delete()
        assert lease.stage is Stage.DELETING
        lease.queue_delete(now=6.0)  # the delete failed and is tried again
        assert lease.stage is Stage.DELETE_QUEUED

    def test_a_kept_message_is_started_again(self) -> None:
        lease = a_lease()
        lease.start(Future())
        lease.keep(until=30.0)
        assert (lease.stage, lease.future, lease.retry_at) == (Stage.KEPT, None, 30.0)
        lease.start(Future())
        assert lease.stage is Stage.WORKING

    @pytest.mark.parametrize(
        ("setup", "move"),
        [
            # A message whose delete is queued must never be returned to the queue too: it
            # would be worked on twice.
            ("queue_delete", "return_to_queue"),
            ("queue_delete", "start"),
            ("return_to_queue", "queue_delete"),
            ("return_to_queue", "keep"),
            ("send_delete", "return_to_queue"),
            ("dead_letter", "keep"),
        ],
    )
    def test_moves_the_table_does_not_allow_raise(self, setup: str, move: str) -> None:
        lease = a_lease()
        if setup == "send_delete":
            lease.queue_delete(now=0.0)
        moves = {
            "queue_delete": lambda: lease.queue_delete(now=0.0),
            "return_to_queue": lease.return_to_queue,
            "send_delete": lease.send_delete,
            "dead_letter": lease.dead_letter,
            "start": lambda: lease.start(Future()),
            "keep": lambda: lease.keep(until=1.0),
        }
        moves[setup]()
        with pytest.raises(LeaseStageError, match=f"cannot {move}"):
            moves[move]()

    def test_settle_is_allowed_from_any_stage(self) -> None:
        lease = a_lease()
        lease.dead_letter()
        lease.settle()
        assert lease.stage is Stage.SETTLED


class TestCapacity:
    def test_a_place_is_given_back_once_whoever_comes_first(self) -> None:
        capacity = Capacity(limit=2)
        assert capacity.reserve(least=1, most=10, timeout=0) == 2
        lease = a_lease()
        capacity.give_back(lease)
        capacity.give_back(lease)  # the loop, after the download thread did
        assert capacity.free() == 1

    def test_reserve_waits_for_the_least_and_gives_up(self) -> None:
        capacity = Capacity(limit=3)
        assert capacity.reserve(least=1, most=2, timeout=0) == 2
        assert capacity.reserve(least=2, most=2, timeout=0.01) == 0
        capacity.unreserve(1)
        assert capacity.reserve(least=2, most=10, timeout=0) == 2

    def test_forgetting_a_lease_settles_it_and_frees_its_place(self) -> None:
        capacity = Capacity(limit=1)
        leases = Leases(capacity=capacity)
        assert capacity.reserve(least=1, most=1, timeout=0) == 1
        lease = a_lease()
        leases.add(lease)
        assert leases.holds(lease)
        leases.forget([lease])
        leases.forget([lease])
        assert (len(leases), lease.stage, capacity.free()) == (0, Stage.SETTLED, 1)


class TestRenewer:
    def setup_method(self) -> None:
        self.queue = StubQueue()
        self.metrics = Metrics()
        self.renewer = Renewer(
            queue=self.queue,
            metrics=self.metrics,
            settings=WorkerSettings(visibility_timeout_seconds=100),
        )

    def received(self) -> Lease:
        self.queue.put("{}")
        (message,) = self.queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=100)
        lease = lease_for(message, timeout=100)
        self.renewer.track(lease, granted=100)
        return lease

    def test_a_lease_is_renewed_once_half_its_time_is_gone_not_before(self) -> None:
        lease = self.received()
        assert self.renewer.renew(49.0) == []
        assert self.queue.visibility_calls == []
        self.renewer.renew(50.0)
        assert self.queue.visibility_calls == [(lease.message.message_id, 100)]
        assert lease.visible_until == 150.0
        self.renewer.renew(99.0)  # next due at 100
        assert len(self.queue.visibility_calls) == 1
        self.renewer.renew(100.0)
        assert len(self.queue.visibility_calls) == 2

    def test_settled_leases_leave_the_list(self) -> None:
        lease = self.received()
        lease.settle()
        self.renewer.renew(60.0)
        assert self.queue.visibility_calls == []

    def test_a_lease_being_deleted_is_looked_at_again_a_sweep_later(self) -> None:
        lease = self.received()
        lease.queue_delete(now=0.0)
        lease.send_delete()
        self.renewer.renew(60.0)
        assert self.queue.visibility_calls == []
        lease.queue_delete(now=60.0)  # the delete failed: it is in hand again
        self.renewer.renew(60.2)
        assert self.queue.visibility_calls == [(lease.message.message_id, 100)]

    def test_a_receipt_sqs_no_longer_knows_is_handed_back_and_not_renewed_again(self) -> None:
        lease = self.received()
        self.queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=0)  # nothing visible
        self.queue.change_visibility([(lease.message, 0)])
        self.queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=100)  # new receipt
        assert self.renewer.renew(50.0) == [lease]
        self.renewer.renew(200.0)
        assert self.metrics.get("visibility_extensions") == 0

    def test_the_twelve_hour_cap_is_said_once(self, caplog: pytest.LogCaptureFixture) -> None:
        self.received()
        caplog.set_level(logging.WARNING, logger="s3sqsd.worker")
        held = SQS_MAX_VISIBILITY_SECONDS - 10  # no room left under the cap
        self.renewer.renew(held)
        self.renewer.renew(held + 1)
        self.renewer.renew(held + 30)
        capped = [r for r in caplog.records if getattr(r, "event", "") == "lease.cap_reached"]
        assert len(capped) == 1
        assert self.queue.visibility_calls == []


class TestFailurePolicy:
    def policy(self) -> FailurePolicy:
        settings = WorkerSettings(max_attempts=3, base_delay_seconds=2, max_delay_seconds=60)
        return FailurePolicy(
            settings=settings,
            metrics=Metrics(),
            rng=random.Random(1),
        )

    def test_a_transient_failure_is_retried_until_the_attempts_run_out(self) -> None:
        policy = self.policy()
        first = policy.decide(Message("m", "r", "{}", 1), FetchError("reset"))
        assert (first.action, 0 < first.delay <= 60) == (Action.RETRY, True)
        last = policy.decide(Message("m", "r", "{}", 3), FetchError("reset"))
        assert last.action is Action.DEAD_LETTER
        assert isinstance(last.error, AttemptsExhaustedError)
        assert "attempt 3 of 3" in str(last.error)

    def test_a_permanent_failure_is_dead_lettered_at_once(self) -> None:
        verdict = self.policy().decide(Message("m", "r", "{}", 1), MessageFormatError("junk"))
        assert verdict.action is Action.DEAD_LETTER
        assert isinstance(verdict.error, MessageFormatError)

    def test_local_failures_keep_the_message_and_their_delay_grows_until_a_success(self) -> None:
        policy = self.policy()
        message = Message("m", "r", "{}", 1)
        verdicts = [policy.decide(message, LocalError("disk full")) for _ in range(5)]
        assert {verdict.action for verdict in verdicts} == {Action.KEEP}
        assert verdicts[0].delay <= 2 < 16 <= verdicts[4].delay  # 2 s, doubled, equal jitter
        policy.succeeded()
        assert policy.decide(message, LocalError("disk full")).delay <= 2


class TestSettlerDuplicates:
    def test_two_copies_of_one_message_in_one_delete_batch_are_both_let_go(self) -> None:
        """A standard queue may deliver a message twice (two receipts, one id); both copies can
        finish in one batch. Matching answers by id once left one copy in hand for ever."""
        queue = StubQueue()
        queue.put("{}")
        (first,) = queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=0)
        (second,) = queue.receive(max_messages=1, wait_seconds=0, visibility_timeout=30)
        assert first.message_id == second.message_id
        capacity = Capacity(limit=2)
        assert capacity.reserve(least=2, most=2, timeout=0) == 2
        leases = Leases(capacity=capacity)
        inbox: Inbox = SimpleQueue()
        settler = Settler(
            queue=queue,
            dead_letter_queue=None,
            settings=WorkerSettings(),
            metrics=Metrics(),
            inbox=inbox,
            clock=lambda: 0.0,
            stopped=lambda: True,
            give_back=capacity.give_back,
            forget=leases.forget,
            deletes_in_flight=lambda: 1,
        )
        for message in (first, second):
            lease = lease_for(message)
            leases.add(lease)
            settler.done(lease)
        settler.settle()
        answer = inbox.get(timeout=5)
        assert isinstance(answer, Deleted)
        settler.deleted(answer.answer)
        assert len(leases) == 0
        assert capacity.free() == 2


def test_settled_leases_do_not_pile_up_in_the_renewal_heap() -> None:
    renewer = Renewer(queue=StubQueue(), metrics=Metrics(), settings=WorkerSettings())
    for number in range(1000):
        lease = a_lease(number)
        renewer.track(lease, granted=100)
        lease.settle()
    assert len(renewer._due) < 200
