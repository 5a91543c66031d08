"""Dask worker preload (``preload=["simstudy.study.worker_preload"]``) of a local cluster's
worker processes: they ignore SIGINT.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the client and
every worker process the local cluster spawned. The client turns it into a clean stop
(finished blocks are kept, the cluster is closed, which ends its workers); a worker that
also got it would print a ``KeyboardInterrupt`` traceback of its own first. While the
client shuts down, a worker whose heartbeat finds the scheduler gone would also log that
with a traceback: that message is dropped (:class:`SchedulerGoneFilter`), nothing else.
"""

from __future__ import annotations

import logging
import signal
import threading

#: messages of ``distributed.worker`` that only say the scheduler went away (the client is stopping)
_SCHEDULER_GONE = ("Failed to communicate with scheduler during heartbeat",)


class SchedulerGoneFilter(logging.Filter):
    """Drops the worker's "scheduler went away" records (logged with a traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(str(record.msg).startswith(m) for m in _SCHEDULER_GONE)


def ignore_sigint() -> None:
    """Ignore SIGINT in this process (only possible from its main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload protocol
    ignore_sigint()
    logging.getLogger("distributed.worker").addFilter(SchedulerGoneFilter())
