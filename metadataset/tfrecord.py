"""TFRecord files without TensorFlow: record framing and its CRC checks.

Each record is (TensorFlow's python_io documentation, "TFRecords Format Details"):

    uint64 length                  little-endian
    uint32 masked_crc32c(length)   of those 8 bytes
    byte   data[length]
    uint32 masked_crc32c(data)

with masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32) and crc the CRC-32C
(Castagnoli) checksum. Files are uncompressed, as Meta-Dataset's converter writes them.
The CRC comes from the `crc32c` package (a C extension; a pure-Python CRC would make reading
the real sources, gigabytes of JPEGs, needlessly slow).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c as _crc32c

from metadataset.errors import MetaDatasetError

MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record: header, its CRC, the data, the data's CRC."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))


def write(path: str | os.PathLike, records) -> int:
    """Write the records (bytes each) to `path` atomically (temporary file, then rename), so
    an interrupted conversion never leaves a half-written class file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for data in records:
                f.write(frame(bytes(data)))
                n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def read(path: str | os.PathLike) -> list[bytes]:
    """Every record of the file, each checked against both of its CRCs.

    A missing file, a cut-off record or a CRC mismatch is a MetaDatasetError naming the file
    and the record index."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise MetaDatasetError(f"{path}: class file not found") from None
    except OSError as exc:
        raise MetaDatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out, pos, end_of_file = [], 0, len(blob)
    while pos < end_of_file:
        i = len(out)
        if pos + 12 > end_of_file:
            raise MetaDatasetError(f"{path}: truncated TFRecord (record {i}: header cut short)")
        header = blob[pos:pos + 8]
        if struct.unpack_from("<I", blob, pos + 8)[0] != masked_crc(header):
            raise MetaDatasetError(f"{path}: corrupt TFRecord (record {i}: length CRC mismatch)")
        start = pos + 12
        stop = start + struct.unpack("<Q", header)[0]
        if stop + 4 > end_of_file:
            raise MetaDatasetError(f"{path}: truncated TFRecord (record {i}: data cut short)")
        data = blob[start:stop]
        if struct.unpack_from("<I", blob, stop)[0] != masked_crc(data):
            raise MetaDatasetError(f"{path}: corrupt TFRecord (record {i}: data CRC mismatch)")
        out.append(data)
        pos = stop + 4
    return out


def offsets(path: str | os.PathLike) -> list[int]:
    """Where each record of the file starts, from its headers alone (seeking past the data):
    a multi-gigabyte shard is indexed without being read. A cut-off record or a length CRC
    mismatch is a MetaDatasetError naming the file and the record index."""
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except FileNotFoundError:
        raise MetaDatasetError(f"{path}: shard not found") from None
    except OSError as exc:
        raise MetaDatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out, pos = [], 0
    with f:
        while pos < size:
            i = len(out)
            f.seek(pos)
            head = f.read(12)
            if len(head) < 12:
                raise MetaDatasetError(f"{path}: truncated TFRecord (record {i}: header cut short)")
            if struct.unpack_from("<I", head, 8)[0] != masked_crc(head[:8]):
                raise MetaDatasetError(f"{path}: corrupt TFRecord (record {i}: length CRC mismatch)")
            stop = pos + 12 + struct.unpack_from("<Q", head)[0] + 4
            if stop > size:
                raise MetaDatasetError(f"{path}: truncated TFRecord (record {i}: data cut short)")
            out.append(pos)
            pos = stop
    return out


def read_at(path: str | os.PathLike, starts) -> list[bytes]:
    """The records that start at `starts` (from offsets()), each checked against its data CRC."""
    path = Path(path)
    out = []
    with open(path, "rb") as f:
        for pos in starts:
            f.seek(pos)
            length = struct.unpack("<Q", f.read(8))[0]
            f.seek(pos + 12)
            data = f.read(length)
            crc = f.read(4)
            if len(data) < length or len(crc) < 4 or struct.unpack("<I", crc)[0] != masked_crc(data):
                raise MetaDatasetError(f"{path}: corrupt TFRecord (record at byte {pos}: data CRC mismatch)")
            out.append(data)
    return out
