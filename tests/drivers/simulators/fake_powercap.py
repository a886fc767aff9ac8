"""A fake Linux powercap tree whose RAPL energy counters the test drives.

It lays out zones as /sys/class/powercap does (``intel-rapl:0`` for a
package, ``intel-rapl:0:1`` for its sub-zones, ``intel-rapl-mmio:0`` for the
MMIO duplicate) with ``name``, ``energy_uj`` and ``max_energy_range_uj``
files.  A background thread can make counters run at a given power, like the
hardware does, wrapping at ``max_energy_range_uj``.  Files are replaced
atomically so a reader never sees half a number.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path


class FakePowercap:
    """A powercap tree under *root*; counters advance at the set watts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "intel-rapl").mkdir(exist_ok=True)  # the control type, not a zone
        (self.root / "intel-rapl" / "enabled").write_text("1\n")
        self._lock = threading.Lock()
        self._energy: dict[str, float] = {}
        self._max: dict[str, int] = {}
        self._watts: dict[str, float] = {}
        self._modes: dict[str, int] = {}
        self.wraps: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_zone(
        self,
        directory: str,
        name: str,
        watts: float = 0.0,
        max_range_uj: int = 262_143_328_850,
        energy_uj: int = 12_345_678,
    ) -> Path:
        path = self.root / directory
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        with self._lock:
            self._energy[directory] = float(energy_uj)
            self._max[directory] = max_range_uj
            self._watts[directory] = watts
            self.wraps[directory] = 0
            self._write(directory)
        return path

    def remove_zone(self, directory: str) -> None:
        """Take a zone away, as unloading the RAPL module or offlining a package does."""
        with self._lock:
            for values in (self._energy, self._max, self._watts, self._modes, self.wraps):
                values.pop(directory, None)
            shutil.rmtree(self.root / directory)

    def set_watts(self, directory: str, watts: float) -> None:
        with self._lock:
            self._watts[directory] = watts

    def set_mode(self, directory: str, mode: int) -> None:
        """Change the permission bits of a zone's energy_uj (0o400 since Linux 5.10)."""
        with self._lock:
            self._modes[directory] = mode
            os.chmod(self.energy_file(directory), mode)

    def energy_file(self, directory: str) -> Path:
        return self.root / directory / "energy_uj"

    def start(self, step: float = 0.02) -> FakePowercap:
        """Advance every counter at its power, every *step* seconds."""
        self._thread = threading.Thread(target=self._run, args=(step,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, step: float) -> None:
        last = time.monotonic()
        while not self._stop.wait(step):
            now = time.monotonic()
            with self._lock:
                for directory, watts in self._watts.items():
                    energy = self._energy[directory] + watts * (now - last) * 1e6
                    if energy > self._max[directory]:
                        energy -= self._max[directory]
                        self.wraps[directory] += 1
                    self._energy[directory] = energy
                    self._write(directory)
            last = now

    def _write(self, directory: str) -> None:
        target = self.root / directory / "energy_uj"
        mode = self._modes.get(directory, 0o444)
        temporary = target.with_name("energy_uj.tmp")
        temporary.write_text(f"{int(self._energy[directory])}\n")
        os.chmod(temporary, mode)
        os.replace(temporary, target)
