"""Worker processes that compute probes' energies, so that a query uses more than one core.

Parsing a day of 1 Hz samples and integrating it takes about 10 ms of one
core per probe, all of it under Python's global lock: the reading threads
of a query hand the export lines of each large probe to one of these
processes and wait for its :class:`~kwapi.plugins.history.energy_range.ProbeEnergy`.
Small probes are computed in the reading thread, where sending them would
cost more than it saves. The processes start at the first large query
(forkserver: a clean process, not a copy of the daemon's threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from kwapi.plugins.history.energy_range import ProbeEnergy
from kwapi.plugins.history.export_lines import energy_of_lines

LOG = logging.getLogger(__name__)

#: Samples of one probe from which its energy is computed by a worker process.
PARALLEL_MIN_SAMPLES = 20_000


class EnergyWorkers:
    """Up to *processes* worker processes (none: every energy in the calling thread)."""

    def __init__(self, processes: int, min_samples: int = PARALLEL_MIN_SAMPLES) -> None:
        self.processes = processes
        self.min_samples = min_samples
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def energy(
        self, lines: Sequence[bytes], count: int, start: float, end: float, max_gap: float
    ) -> ProbeEnergy:
        """The energy of the probe whose export *lines* hold *count* samples."""
        if self.processes < 1 or count < self.min_samples:
            return energy_of_lines(lines, start, end, max_gap)
        pool = self._started()
        try:
            return pool.submit(energy_of_lines, lines, start, end, max_gap).result()
        except BrokenProcessPool:
            LOG.warning("an energy worker process died; starting new ones")
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            return energy_of_lines(lines, start, end, max_gap)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
            return self._pool

    def close(self) -> None:
        """Stop the worker processes (they start again if asked)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
