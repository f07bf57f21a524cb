"""Admission: a received message planned (``plan_message``), and what the plan acknowledged
without work said in the log and counted, before the loop acts on the rest.

Kept out of the loop because it is the only place these log lines are written, and apart from
``plan`` because ``plan`` stays pure: this module logs and counts, it decides nothing.
"""

from __future__ import annotations

import logging

from s3sqsd.events import object_url
from s3sqsd.metrics import Metrics
from s3sqsd.sqs import Message
from s3sqsd.worker.plan import MessagePlan, Place, plan_message
from s3sqsd.worker.settings import WorkerSettings

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


def admit(
    message: Message, *, settings: WorkerSettings, place: Place, metrics: Metrics
) -> MessagePlan:
    """Plan ``message``; log the test event, ignored records and unrouted objects."""
    plan = plan_message(body=message.body, settings=settings, place=place)
    if plan.test_event is not None:
        logger.info(
            "s3:TestEvent for bucket %s acknowledged",
            plan.test_event.bucket,
            extra={
                "event": "message.test_event",
                "bucket": plan.test_event.bucket,
                "message_id": message.message_id,
            },
        )
        return plan
    for record in plan.ignored:
        metrics.inc("records_ignored")
        logger.info(
            "%s for %s acknowledged; nothing to download, local files kept",
            record.event_name,
            object_url(record.bucket, record.key),
            extra={
                "event": "record.ignored",
                "bucket": record.bucket,
                "key": record.key,
                "event_name": record.event_name,
                "message_id": message.message_id,
            },
        )
    for obj in plan.unrouted:
        metrics.inc("objects_skipped", outcome="unrouted")
        logger.info(
            "%s: no route takes it; acknowledged (unrouted: acknowledge)",
            object_url(obj.bucket, obj.key),
            extra={
                "event": "object.unrouted",
                "bucket": obj.bucket,
                "key": obj.key,
                "message_id": message.message_id,
            },
        )
    return plan
