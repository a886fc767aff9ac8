"""kwapi-api's C heap settings: applied where the C library is glibc, a thread that stops."""

from __future__ import annotations

import platform

import pytest

from kwapi.plugins.api.memory import HeapTrim, map_big_buffers


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_big_buffers_are_mapped_apart_with_glibc():
    assert map_big_buffers() is True


def test_heap_trim_runs_until_stopped():
    trim = HeapTrim(period=0.01)
    trim.start()
    assert trim.is_alive() or platform.libc_ver()[0] != "glibc"
    trim.stop()
    trim.join(5)
    assert not trim.is_alive()
