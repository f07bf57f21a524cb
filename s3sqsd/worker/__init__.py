"""The work loop: receive, lease, download, renew, settle, drain (see ``loop`` for the design).

A package so that each kind of thread's work can be read on its own; this module re-exports the
names the rest of s3sqsd and the tests import from ``s3sqsd.worker``, so none of them changes.
"""

from s3sqsd.ranged import parts_executor
from s3sqsd.worker.lease import Outcome
from s3sqsd.worker.loop import Worker
from s3sqsd.worker.plan import FetcherLike, MessagePlan, Place, plan_message
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.receiver import _failure_state
from s3sqsd.worker.settings import WorkerSettings, least_batch

__all__ = [
    "FetcherLike",
    "MessagePlan",
    "Outcome",
    "Place",
    "QueueLike",
    "Worker",
    "WorkerSettings",
    "_failure_state",
    "least_batch",
    "parts_executor",
    "plan_message",
]
