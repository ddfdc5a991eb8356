"""Durable tasks: the pull consumer ``<agent>`` on ``bus.task.<agent>`` (stream ``BUS_TASKS``).

Per task: decode; if it may have run before (a redelivery, a re-dispatch) and was answered,
ack it; else run the chain, with ``in_progress`` heartbeats while it runs. A retryable
failure with attempts left is a NAK with the backoff delay (the retry survives this process);
otherwise the reply is stored (a workflow task's on ``bus.reply.<agent>.<run_id>.<task>`` in
``BUS_REPLIES``, which is also its idempotency record; any other task's as a record in
``bus_cache``) and only then is the task acked. Tasks that cannot succeed go to the DLQ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import anyio
import structlog
from anyio.abc import TaskGroup

from bus import codec
from bus.deadletter import Reason
from bus.errors import InvalidInputError, TransientError, is_retryable
from bus.messages import (
    REDISPATCH_HEADER,
    REPLAY_HEADER,
    ErrorInfo,
    Reply,
    Task,
    error_reply,
)
from bus.middleware.deadlines import running_task
from bus.middleware.idempotency import IdempotencyStore
from bus.runtime.cancel import CancelRegistry
from bus.runtime.deadletters import DeadLetters
from bus.runtime.handlers import HandlerRuntime
from bus.subjects import Subjects
from bus.transport.consumer import Delivery, PullConsumer
from bus.transport.publisher import Outbound
from bus.transport.wire import Wire
from bus.workpool import WorkPool

log = structlog.get_logger("bus.runtime")

CRASH_MARGIN = 3
RETRY_PAUSE = 0.25


class DurableWorker:
    """Fetches tasks only as fast as free slots, the breaker and the rate limit allow."""

    def __init__(
        self,
        agent: str,
        handlers: dict[str, HandlerRuntime],
        *,
        consumer: PullConsumer,
        wire: Wire,
        subjects: Subjects,
        idempotency: IdempotencyStore | None,
        dead_letters: DeadLetters,
        cancels: CancelRegistry,
        concurrency: int,
        ack_wait: float,
        fetch_wait: float,
    ) -> None:
        self._agent = agent
        self._handlers = handlers
        self._default = next(iter(handlers.values()))
        self.consumer = consumer
        self._wire = wire
        self._subjects = subjects
        self._idempotency = idempotency
        self._dead_letters = dead_letters
        self._cancels = cancels
        self._slots = anyio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._ack_wait = ack_wait
        self._fetch_wait = fetch_wait
        # Fetched tasks go to a fixed pool of workers (a task per message costs more than a
        # fast handler); the slots keep fetched-but-unfinished tasks within `concurrency`.
        self._pool: WorkPool[tuple[Delivery, bool]] = WorkPool(
            self._serve, workers=concurrency, capacity=concurrency, eager=True
        )
        self._running: dict[Delivery, float] = {}
        self._workers_done = anyio.Event()
        self.consuming = False

    def start(self, tg: TaskGroup) -> None:
        """Start the workers and the heartbeat in ``tg`` (they stop after ``close``)."""
        tg.start_soon(self._work)
        tg.start_soon(self._heartbeat)

    async def close(self) -> None:
        """Let the workers finish what was fetched, then stop them."""
        self._pool.close()

    async def run(self, stop: anyio.Event) -> None:
        """Fetch and hand out tasks until ``stop`` is set."""
        # The service ensured the consumer before starting this loop; fetch() rebinds it.
        self.consuming = True
        try:
            while not stop.is_set():
                held = await self._take_slots()
                try:
                    deliveries, admitted = await self._fetch(held)
                except BaseException:
                    self._release(held)
                    raise
                self._release(held - len(deliveries))
                for delivery in deliveries:
                    await self._pool.put((delivery, admitted))
        finally:
            self.consuming = False

    async def _work(self) -> None:
        try:
            async with anyio.create_task_group() as workers:
                self._pool.start(workers)
        finally:
            self._workers_done.set()

    async def _serve(self, item: tuple[Delivery, bool]) -> None:
        delivery, admitted = item
        self._running[delivery] = time.monotonic()
        try:
            await self.process(delivery, admitted=admitted)
        except Exception:
            log.exception("task processing failed outside the handler chain")
        finally:
            del self._running[delivery]
            self._slots.release()

    async def _heartbeat(self) -> None:
        """Tell JetStream that handlers running longer than half the ack wait are alive."""
        while not self._workers_done.is_set():
            with anyio.move_on_after(self._ack_wait / 4):
                await self._workers_done.wait()
            due = time.monotonic() - self._ack_wait / 2
            for delivery, started in list(self._running.items()):
                if started <= due:
                    await delivery.in_progress()

    async def _take_slots(self) -> int:
        await self._slots.acquire()
        held = 1
        while held < self._concurrency and self._slots.value > 0:
            self._slots.acquire_nowait()
            held += 1
        return held

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _fetch(self, held: int) -> tuple[Sequence[Delivery], bool]:
        """Fetch at most what the breaker and the rate limit admit right now."""
        resilience = self._default.resilience
        if resilience.breaker is not None:
            await resilience.breaker.wait_permitted()
        if resilience.limiter is None:
            return await self.consumer.fetch(held, self._fetch_wait), False
        tokens = await resilience.limiter.admit_up_to(held)
        deliveries = await self.consumer.fetch(tokens, self._fetch_wait)
        unused = tokens - len(deliveries)
        if unused > 0:
            resilience.limiter.refund(unused)
        return deliveries, True

    async def process(self, delivery: Delivery, *, admitted: bool = False) -> None:
        ctype = codec.content_type(delivery.headers)
        try:
            task = codec.decode(delivery.data, Task, ctype)
        except InvalidInputError as exc:
            await self._give_up(delivery, None, "invalid_input", str(exc))
            await delivery.term()
            return
        handler = self._handlers.get(task.handler) if task.handler else self._default
        if handler is None:
            reply = error_reply(
                task, ErrorInfo(kind="invalid_input", message=f"no handler {task.handler!r}")
            )
            await self._finish(delivery, task, reply, dead_letter="unknown_handler")
            return
        if delivery.delivered > handler.max_attempts + CRASH_MARGIN:
            # Redelivered again and again without an answer: the handler kills its process or
            # outlives the ack wait. Stop the loop instead of crashing every replica in turn.
            error = f"redelivered {delivery.delivered} times without an answer"
            reply = error_reply(task, ErrorInfo(kind="transient", message=error))
            await self._finish(delivery, task, reply, dead_letter="max_deliver")
            return
        if _may_have_run(delivery):
            try:
                answered = await self._answered(task)
            except TransientError as exc:
                # Unknown whether it already ran: never guess, try again shortly.
                log.warning("idempotency record unreadable, retrying", error=str(exc))
                await delivery.nak(RETRY_PAUSE * 4)
                return
            if answered:
                await delivery.ack()
                return
        run_id = task.run_id
        me = running_task() if run_id else None
        if me is not None:
            self._cancels.enter(run_id, me)
        try:
            ctx = handler.context(
                task,
                mode="durable",
                attempt=delivery.delivered,
                progress=delivery.in_progress,
                admitted=admitted,
            )
            reply = await handler.chain(ctx)
        except asyncio.CancelledError:
            if me is None or not self._cancels.leave(run_id, me):
                raise
            log.info("task cancelled with its run", task_id=task.id, run_id=run_id)
            await delivery.ack()
            return
        if me is not None:
            self._cancels.leave(run_id, me)  # answered, even if it swallowed a cancellation
        if ctx.retry_delay is not None:
            await delivery.nak(ctx.retry_delay)
            return
        reason = _dead_letter_reason(reply, delivery.delivered)
        await self._finish(delivery, task, reply, dead_letter=reason)

    async def _finish(
        self, delivery: Delivery, task: Task, reply: Reply, *, dead_letter: Reason | None
    ) -> None:
        if dead_letter is not None:
            error = reply.error.message if reply.error else ""
            await self._give_up(delivery, task, dead_letter, error)
        if not await self._record_and_reply(task, reply):
            # Not acked: JetStream redelivers, and the recorded reply (if any) is sent then.
            return
        await delivery.ack()

    async def _answered(self, task: Task) -> bool:
        """Whether this task id was answered before: its reply is in ``BUS_REPLIES`` (a
        workflow task) or its idempotency record in ``bus_cache`` (any other)."""
        if task.run_id:
            subject = self._subjects.reply(self._agent, task.run_id, task.id)
            stream = self._subjects.replies_stream
            return await self._wire.last_message(stream, subject) is not None
        if self._idempotency is None:
            return False
        return await self._idempotency.get(task.id) is not None

    async def _record_and_reply(self, task: Task, reply: Reply) -> bool:
        """Store the reply where a redelivery will find it; retried through a reconnect or
        failover.

        A workflow task's reply goes to ``BUS_REPLIES`` on a subject of its own, which keeps
        it after the coordinator acks: one write is both the reply and the record. Any other
        task's reply is recorded in ``bus_cache``. The write is idempotent (the reply is
        deduplicated by its Nats-Msg-Id, the record overwritten), so a retry repeats it.

        The handler's effect has happened: giving up here means running it again on
        redelivery, so keep trying for half the ack wait before leaving it to JetStream.
        """
        deadline = time.monotonic() + self._ack_wait / 2
        encoded = codec.encode(reply)
        if task.run_id:
            message = self._reply_message(task, encoded)
        elif self._idempotency is not None:
            message = self._idempotency.record(task.id, encoded)
        else:
            return True
        while True:
            try:
                await self._wire.persist_all([message])
                return True
            except TransientError as exc:
                if time.monotonic() >= deadline:
                    log.warning("reply not stored, task will be redelivered", error=str(exc))
                    return False
                await anyio.sleep(RETRY_PAUSE)

    def _reply_message(self, task: Task, encoded_reply: bytes) -> Outbound:
        headers = {"Nats-Msg-Id": f"reply.{task.id}"}
        if task.trace:
            headers["traceparent"] = task.trace
        subject = self._subjects.reply(self._agent, task.run_id, task.id)
        return Outbound(subject, encoded_reply, headers)

    async def _give_up(
        self, delivery: Delivery, task: Task | None, reason: Reason, error: str
    ) -> None:
        await self._dead_letters.send(
            delivery.data,
            reason=reason,
            error=error,
            task_id=task.id if task else "",
            subject=delivery.subject,
            attempts=delivery.delivered,
            content_type=delivery.headers.get("Content-Type"),
        )


def _may_have_run(delivery: Delivery) -> bool:
    """Whether this task id may have run here before: a redelivery, or a re-publish the
    coordinator marked. A replay (`bus dlq replay`) asks to run it anew either way."""
    headers = delivery.headers
    if REPLAY_HEADER in headers:
        return False
    return delivery.delivered > 1 or REDISPATCH_HEADER in headers


def _dead_letter_reason(reply: Reply, delivered: int) -> Reason | None:
    if reply.error is None:
        return None
    if reply.error.kind == "invalid_input":
        return "invalid_input"
    if is_retryable(reply.error.kind):
        return "max_deliver"
    return None
