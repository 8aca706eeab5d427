"""A dask worker plugin for our own local clusters: Ctrl-C is the driver's alone.

A terminal's Ctrl-C reaches every process of its group. Each worker used to print its own
KeyboardInterrupt traceback (about 80 lines for 2 workers) over the driver's one line; the driver
already stops the run and closes the cluster, so the workers ignore SIGINT and keep their shutdown
warnings to themselves. (Its own module: importing distributed costs a no-work rerun a second.)
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from distributed import WorkerPlugin


class QuietWorker(WorkerPlugin):
    """Ignore SIGINT and log nothing but critical errors, in each worker process."""

    name = "pointad-quiet-worker"

    def setup(self, worker: Any) -> None:
        """Runs in the worker process, on its main thread (the one signals go to)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # a task's error comes back as its row's
