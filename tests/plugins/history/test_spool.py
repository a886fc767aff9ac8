"""The on-disk spool: durable files, oldest first, bounded, surviving a restart."""

from __future__ import annotations

import logging

import pytest

from kwapi.plugins.history.spool import Spool, SpoolError


def bodies(spool: Spool) -> list[bytes]:
    """Every spooled body, oldest first, removed from the spool."""
    taken = []
    while (spooled := spool.oldest()) is not None:
        taken.append(spool.read(spooled))
        spool.remove(spooled)
    return taken


def test_batches_come_back_oldest_first_and_survive_a_restart(tmp_path):
    spool = Spool(tmp_path / "spool", 10_000)
    for index in range(5):
        assert spool.put(f"batch {index}".encode(), 10 + index, "ms")
    assert len(spool) == 5 and spool.samples() == 60 and spool.size == 5 * 7
    reopened = Spool(tmp_path / "spool", 10_000)
    assert reopened.samples() == 60 and reopened.size == spool.size
    assert reopened.put(b"batch 5", 1, "ns")  # numbered after those found
    assert bodies(reopened) == [f"batch {index}".encode() for index in range(6)]
    assert reopened.stats.replayed == 61
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_file_cut_short_by_a_kill_is_removed_and_others_are_left_alone(tmp_path, caplog):
    directory = tmp_path / "spool"
    Spool(directory, 1000).put(b"whole", 3, "ms")
    (directory / ".tmp-0000000000000002-3-ms.lp.gz").write_bytes(b"half")
    (directory / "notes.txt").write_text("an operator's file")
    with caplog.at_level(logging.WARNING):
        spool = Spool(directory, 1000)
    assert len(spool) == 1 and spool.samples() == 3
    assert not (directory / ".tmp-0000000000000002-3-ms.lp.gz").exists()
    assert (directory / "notes.txt").exists() and "notes.txt" in caplog.text


def test_a_full_spool_drops_the_oldest_batches_and_says_so_once(tmp_path, caplog):
    spool = Spool(tmp_path, 100)
    with caplog.at_level(logging.WARNING):
        for index in range(10):  # 30 bytes each: three fit
            assert spool.put(bytes([index]) * 30, 5, "ms")
    assert len(spool) == 3 and spool.size == 90 and spool.full
    assert spool.stats.dropped_full == 7 * 5 and spool.stats.spooled == 50
    assert [body[0] for body in bodies(spool)] == [7, 8, 9]  # the newest kept
    assert caplog.text.count("spool full") == 1, caplog.text
    assert not spool.full  # empty again: the next episode is logged again


def test_a_batch_larger_than_the_spool_is_dropped_alone(tmp_path):
    spool = Spool(tmp_path, 100)
    assert spool.put(b"x" * 50, 2, "ms")
    assert not spool.put(b"y" * 101, 7, "ms")
    assert len(spool) == 1 and spool.stats.dropped_full == 7


def test_an_unusable_directory_is_an_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot use"):
        Spool(tmp_path / "file" / "spool", 100)
