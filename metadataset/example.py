"""tf.train.Example in protobuf wire format, without protobuf or TensorFlow.

The messages (tensorflow/core/example/{example,feature}.proto):

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   # on the wire: repeated {key = 1; value = 2}
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

A few dozen lines of wire format replace a protobuf dependency and its generated-code version
pitfalls. Numeric lists are written packed, as TensorFlow writes them; unpacked ones decode too.
"""
from __future__ import annotations

import struct

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 is two's complement on the wire: negatives take 10 bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes):
    """(field number, wire type, value): an int for varints, bytes for everything else."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == LEN:
            size, pos = _read_varint(buf, pos)
            value = buf[pos:pos + size]
            if len(value) != size:
                raise ValueError("length-delimited field runs past the end")
            pos += size
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            value, pos = buf[pos:pos + size], pos + size
            if len(value) != size:
                raise ValueError("fixed-width field runs past the end")
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | LEN) + _varint(len(payload)) + payload


def _feature(values) -> bytes:
    values = values if isinstance(values, (list, tuple)) else [values]
    if all(isinstance(v, (bytes, bytearray)) for v in values):
        return _field(1, b"".join(_field(1, bytes(v)) for v in values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return _field(3, _field(1, b"".join(_varint(v) for v in values)))
    if all(isinstance(v, float) for v in values):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))
    raise TypeError(f"feature values must be all bytes, all int or all float, got {values!r:.80}")


def encode(features: dict) -> bytes:
    """Serialised tf.train.Example; values are bytes, int or float, or lists of one kind."""
    entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, _feature(v))) for name, v in features.items())
    return _field(1, entries)


def _decode_list(kind: int, buf: bytes) -> list:
    out = []
    for number, wire, value in _fields(buf):
        if number != 1:
            continue
        if kind == 1:
            out.append(bytes(value))
        elif kind == 3:  # int64: packed (LEN) or one varint per value
            if wire == LEN:
                pos = 0
                while pos < len(value):
                    v, pos = _read_varint(value, pos)
                    out.append(v - (1 << 64) if v >= 1 << 63 else v)
            else:
                out.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif kind == 2:  # float: packed (LEN) or one fixed32 per value
            if len(value) % 4:
                raise ValueError("float list length is not a multiple of 4")
            out += list(struct.unpack(f"<{len(value) // 4}f", value))
    return out


def decode(buf: bytes) -> dict:
    """{feature name: list of values} of a serialised tf.train.Example; ValueError if malformed."""
    out = {}
    for number, wire, features in _fields(buf):
        if number != 1 or wire != LEN:
            continue
        for n, w, entry in _fields(features):
            if n != 1 or w != LEN:
                continue
            name, feature = None, b""
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == LEN:
                    name = bytes(ev).decode()
                elif en == 2 and ew == LEN:
                    feature = ev
            if name is None:
                raise ValueError("feature map entry without a key")
            values = []
            for kind, kw, payload in _fields(feature):
                if kind in (1, 2, 3) and kw == LEN:
                    values = _decode_list(kind, payload)
            out[name] = values
    return out
