"""The on-disk spool: batches the store did not take, kept until it does.

Each batch is one file, its gzipped line-protocol body exactly as it was
posted, named ``<sequence>-<samples>-<precision>.lp.gz`` so that the names
sort oldest first and say what the file holds without opening it. A file is
written durably before the batch leaves memory: written to a temporary name,
fsync'ed, renamed, and the directory fsync'ed. A kill -9 at any moment leaves
either the whole file or a temporary one, which the next start removes.

The spool holds at most *max_bytes*. When a new batch would not fit, the
oldest files are dropped to make room (see doc/history.rst, "The spool"):
the newest samples are those still being asked about (running jobs), and
the gap left is one stretch at the start of the outage, not a loss of
everything after it. The first drop of an episode is logged once; the
episode ends when the spool empties.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from kwapi.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

NAME = re.compile(r"(?P<seq>\d{16})-(?P<samples>\d+)-(?P<precision>ms|us|ns)\.lp\.gz")
TEMP_PREFIX = ".tmp-"


class SpoolError(Exception):
    """The spool directory cannot be used."""


@dataclass(frozen=True, order=True)
class SpoolFile:
    """One spooled batch: its sequence (order), samples, precision, size and path."""

    seq: int
    samples: int
    precision: str
    size: int
    path: Path


@dataclass
class SpoolStats:
    """What went into the spool and what left it, in samples."""

    spooled: int = 0
    replayed: int = 0
    dropped_full: int = 0
    dropped_error: int = 0
    full_episodes: int = 0


class Spool:
    """Files of batches in *directory*, oldest first, at most *max_bytes* in all.

    Thread-safe: the writer thread puts and takes, /metrics reads the sizes.
    """

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._files: dict[int, SpoolFile] = {}
        self._bytes = 0
        self._full = False
        self._log = RateLimitedLog(LOG, 60.0)
        self._open()
        self._seq = itertools.count(max(self._files, default=0) + 1)

    def _open(self) -> None:
        """Create the directory, remove temporary files, index the batches left."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            entries = list(os.scandir(self.directory))
            probe = self.directory / f"{TEMP_PREFIX}probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SpoolError(f"cannot use {self.directory}: {exc.strerror or exc}") from None
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                Path(entry.path).unlink(missing_ok=True)  # a write a kill -9 cut short
                continue
            match = NAME.fullmatch(entry.name)
            if match is None or not entry.is_file():
                LOG.warning("spool: ignoring %s, which is not a spooled batch", entry.path)
                continue
            spooled = SpoolFile(
                int(match["seq"]),
                int(match["samples"]),
                match["precision"],
                entry.stat().st_size,
                Path(entry.path),
            )
            self._files[spooled.seq] = spooled
            self._bytes += spooled.size

    @property
    def size(self) -> int:
        """Bytes of every spooled batch."""
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether the spool dropped batches since it was last empty."""
        return self._full

    def __len__(self) -> int:
        return len(self._files)

    def samples(self) -> int:
        """Samples in every spooled batch."""
        with self._lock:
            return sum(spooled.samples for spooled in self._files.values())

    def put(self, body: bytes, samples: int, precision: str) -> bool:
        """Keep *body* (gzipped, *samples* lines) durably; whether it was kept.

        Drops the oldest batches first if *body* would not fit; drops *body*
        itself if it is larger than the whole spool or cannot be written.
        """
        with self._lock:
            if not self._make_room(len(body), samples):
                return False
            seq = next(self._seq)
            path = self.directory / f"{seq:016d}-{samples}-{precision}.lp.gz"
            try:
                _write_durably(path, body)
            except OSError as exc:
                self.stats.dropped_error += samples
                self._log.error(
                    "write",
                    "spool: cannot write %s (%s); %d sample(s) lost",
                    path,
                    exc.strerror or exc,
                    samples,
                )
                return False
            self._files[seq] = SpoolFile(seq, samples, precision, len(body), path)
            self._bytes += len(body)
            self.stats.spooled += samples
            return True

    def _make_room(self, size: int, samples: int) -> bool:
        """Drop the oldest files until *size* more bytes fit; False if they never can."""
        if self._bytes + size <= self.max_bytes:
            return True
        dropped = 0
        if size <= self.max_bytes:
            for seq in sorted(self._files):
                if self._bytes + size <= self.max_bytes:
                    break
                dropped += self._drop(seq)
        fits = self._bytes + size <= self.max_bytes
        if not fits:
            dropped += samples
        self.stats.dropped_full += dropped
        if not self._full:
            self._full = True
            self.stats.full_episodes += 1
            LOG.warning(
                "spool full: %s holds %d of spool_max_bytes = %d bytes; dropping the oldest "
                "spooled samples to keep the newest (%d dropped now, more are counted in "
                'kwapi_history_samples_dropped_total{reason="spool_full"}, not logged)',
                self.directory,
                self._bytes,
                self.max_bytes,
                dropped,
            )
        return fits

    def _drop(self, seq: int) -> int:
        """Remove spooled batch *seq*; its samples."""
        spooled = self._files.pop(seq)
        self._bytes -= spooled.size
        spooled.path.unlink(missing_ok=True)
        return spooled.samples

    def oldest(self) -> SpoolFile | None:
        """The oldest spooled batch, or None."""
        with self._lock:
            return self._files[min(self._files)] if self._files else None

    def read(self, spooled: SpoolFile) -> bytes | None:
        """The body of *spooled*; None (and the file forgotten) if it cannot be read."""
        try:
            return spooled.path.read_bytes()
        except OSError as exc:
            self._log.error(
                "read", "spool: cannot read %s (%s); skipping it", spooled.path, exc.strerror
            )
            self.remove(spooled, replayed=False)
            with self._lock:
                self.stats.dropped_error += spooled.samples
            return None

    def remove(self, spooled: SpoolFile, *, replayed: bool = True) -> None:
        """Forget *spooled* (written to the store if *replayed*) and delete its file."""
        with self._lock:
            if spooled.seq not in self._files:
                return
            self._drop(spooled.seq)
            if replayed:
                self.stats.replayed += spooled.samples
            if not self._files and self._full:
                self._full = False
                LOG.info("spool: empty again; a full spool will be logged again")


def _write_durably(path: Path, body: bytes) -> None:
    """Write *body* to *path* so that a crash leaves all of it or none."""
    temp = path.with_name(TEMP_PREFIX + path.name)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
