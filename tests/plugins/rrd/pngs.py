"""Reading the size of a PNG, enough to tell that rrdtool produced a real image."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) of a PNG after checking its signature and IHDR chunk CRC."""
    assert data[:8] == SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(kind + body) == crc, "corrupt IHDR chunk"
    width, height = struct.unpack(">II", body[:8])
    assert data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82"), "PNG is truncated"
    return width, height
