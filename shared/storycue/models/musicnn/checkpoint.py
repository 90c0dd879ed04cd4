"""Read TensorFlow tensor-bundle checkpoints (``.index`` + ``.data-*``) without TensorFlow.

A tensor bundle is two files sharing a prefix:

* ``<prefix>.index`` — an SSTable in LevelDB's table format. Keys are tensor names,
  values are ``BundleEntryProto`` protobuf messages (dtype, shape, shard, offset, size,
  crc32c); the empty key holds the ``BundleHeaderProto``.
* ``<prefix>.data-00000-of-00001`` (one file per shard) — the raw little-endian tensor bytes.

This module decodes both formats by hand (SSTable blocks with prefix-compressed keys and
restart points, the 48-byte footer, protobuf varints and length-delimited fields), so the
musicnn weights can be loaded with numpy alone. Only uncompressed SSTable blocks are
supported (TensorFlow writes bundles uncompressed); a snappy-compressed block raises a
clear :class:`~storycue.errors.ModelNotFoundError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storycue.errors import ModelNotFoundError

__all__ = [
    "TABLE_MAGIC",
    "BundleEntry",
    "BundleHeader",
    "CheckpointFormatError",
    "crc32c",
    "is_optimizer_slot",
    "read_bundle",
    "read_bundle_index",
    "read_sstable",
]

#: The magic number closing every LevelDB/TensorFlow table file (little-endian u64).
TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5
_NO_COMPRESSION = 0
_SNAPPY_COMPRESSION = 1

#: TensorFlow ``DataType`` enum values → numpy dtypes (little-endian).
_TF_DTYPES: dict[int, np.dtype[np.generic]] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}

#: Name fragments of optimizer state that a model for inference never needs.
_OPTIMIZER_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1")
_OPTIMIZER_NAMES = ("beta1_power", "beta2_power", "global_step")


class CheckpointFormatError(ModelNotFoundError):
    """A checkpoint file is missing, truncated or not in the tensor-bundle format."""

    code = "checkpoint_format_error"


# ---- crc32c (Castagnoli), for block trailers and optional tensor checks -------------------
def _make_crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc``. Pure Python: slow on MBs."""
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask_crc(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---- varints and protobuf wire format --------------------------------------------------------
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; returns ``(value, new_pos)``."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint in checkpoint index")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("varint longer than 10 bytes in checkpoint index")


def _iter_proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)``: ints for varint/fixed, bytes for len-delim."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointFormatError("truncated fixed64 field in checkpoint index")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise CheckpointFormatError("truncated length-delimited field in checkpoint index")
            value = bytes(buf[pos : pos + n])
            pos += n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointFormatError("truncated fixed32 field in checkpoint index")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


@dataclass(frozen=True)
class BundleHeader:
    """``BundleHeaderProto``: shard count, byte order and format version."""

    num_shards: int = 1
    endianness: int = 0  # 0 = little, 1 = big
    version_producer: int = 0


@dataclass(frozen=True)
class BundleEntry:
    """``BundleEntryProto``: where one tensor lives in the data shards, and what it is."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool = False

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        """The numpy dtype of this tensor, or :class:`CheckpointFormatError` if unsupported."""
        try:
            return _TF_DTYPES[self.dtype]
        except KeyError:
            raise CheckpointFormatError(
                f"tensor {self.name!r} has TensorFlow dtype enum {self.dtype}, "
                "which this reader does not support"
            ) from None


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _wire, value in _iter_proto_fields(buf):
        if field == 2 and isinstance(value, bytes):
            size = 0
            for f2, _w2, v2 in _iter_proto_fields(value):
                if f2 == 1 and isinstance(v2, int):
                    size = v2 if v2 < (1 << 63) else v2 - (1 << 64)
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointFormatError("checkpoint tensor has unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    sliced = False
    for field, _wire, value in _iter_proto_fields(buf):
        if field == 1 and isinstance(value, int):
            dtype = value
        elif field == 2 and isinstance(value, bytes):
            shape = _parse_shape(value)
        elif field == 3 and isinstance(value, int):
            shard = value
        elif field == 4 and isinstance(value, int):
            offset = value
        elif field == 5 and isinstance(value, int):
            size = value
        elif field == 6 and isinstance(value, int):
            crc = value
        elif field == 7:
            sliced = True
    return BundleEntry(name, dtype, shape, shard, offset, size, crc, sliced)


def _parse_header(buf: bytes) -> BundleHeader:
    num_shards, endianness, producer = 1, 0, 0
    for field, _wire, value in _iter_proto_fields(buf):
        if field == 1 and isinstance(value, int):
            num_shards = value
        elif field == 2 and isinstance(value, int):
            endianness = value
        elif field == 3 and isinstance(value, bytes):
            for f2, _w2, v2 in _iter_proto_fields(value):
                if f2 == 1 and isinstance(v2, int):
                    producer = v2
    return BundleHeader(num_shards, endianness, producer)


# ---- SSTable ------------------------------------------------------------------------------
def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size + _BLOCK_TRAILER_LEN
    if offset < 0 or end > len(data):
        raise CheckpointFormatError(
            f"{path}: block at offset {offset} (size {size}) runs past the end of the file "
            f"({len(data)} bytes); the checkpoint is truncated or corrupt"
        )
    block = data[offset : offset + size]
    ctype = data[offset + size]
    (masked,) = struct.unpack_from("<I", data, offset + size + 1)
    if _unmask_crc(masked) != crc32c(block + bytes([ctype])):
        raise CheckpointFormatError(f"{path}: checksum mismatch in block at offset {offset}")
    if ctype == _SNAPPY_COMPRESSION:
        raise CheckpointFormatError(
            f"{path}: block at offset {offset} is snappy-compressed, which this reader does "
            "not support; re-save the checkpoint without compression"
        )
    if ctype != _NO_COMPRESSION:
        raise CheckpointFormatError(f"{path}: unknown block compression type {ctype}")
    return block


def _iter_block(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Entries of one block: prefix-compressed keys, followed by the restart-point array."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{path}: block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointFormatError(f"{path}: bad restart count {num_restarts} in block")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _read_varint(block, pos)
        non_shared, pos = _read_varint(block, pos)
        value_len, pos = _read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CheckpointFormatError(f"{path}: corrupt entry in block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_sstable(path: Path | str) -> dict[bytes, bytes]:
    """Every key → value of a LevelDB-format table file (uncompressed blocks only)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointFormatError(f"cannot read checkpoint index {path}: {exc}") from exc
    if len(data) < _FOOTER_LEN:
        raise CheckpointFormatError(
            f"{path} is {len(data)} bytes, shorter than a table footer ({_FOOTER_LEN}); "
            "it is not a TensorFlow checkpoint index"
        )
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointFormatError(
            f"{path} does not end with the table magic number; it is not a TensorFlow "
            "checkpoint index (or it is truncated)"
        )
    pos = 0
    _meta_off, pos = _read_varint(footer, pos)
    _meta_size, pos = _read_varint(footer, pos)
    index_off, pos = _read_varint(footer, pos)
    index_size, pos = _read_varint(footer, pos)
    index_block = _read_block(data, index_off, index_size, path)
    out: dict[bytes, bytes] = {}
    for _last_key, handle in _iter_block(index_block, path):
        off, p = _read_varint(handle, 0)
        size, _ = _read_varint(handle, p)
        for key, value in _iter_block(_read_block(data, off, size, path), path):
            out[key] = value
    return out


# ---- tensor bundle --------------------------------------------------------------------------
def is_optimizer_slot(name: str) -> bool:
    """True for optimizer state (Adam moments, beta powers, step counters)."""
    return name.endswith(_OPTIMIZER_SUFFIXES) or name.rsplit("/", 1)[-1] in _OPTIMIZER_NAMES


def read_bundle_index(index_path: Path | str) -> tuple[BundleHeader, dict[str, BundleEntry]]:
    """The header and the tensor entries of a bundle's ``.index`` file."""
    table = read_sstable(index_path)
    header = _parse_header(table.pop(b"", b""))
    if header.endianness != 0:
        raise CheckpointFormatError(f"{index_path}: big-endian bundles are not supported")
    entries = {
        k.decode("utf-8"): _parse_entry(k.decode("utf-8"), v) for k, v in sorted(table.items())
    }
    return header, entries


def read_bundle(
    prefix: Path | str,
    *,
    include_optimizer: bool = False,
    verify_checksums: bool = False,
) -> dict[str, np.ndarray]:
    """Load every tensor of the bundle ``<prefix>.index`` / ``<prefix>.data-*`` as numpy.

    ``prefix`` may end in a path separator: the musicnn wheel's bundles are named
    ``.index``/``.data-00000-of-00001`` inside their folder (an empty file stem).
    Optimizer slots are skipped unless ``include_optimizer``. Each tensor's byte size is
    checked against its dtype and shape; ``verify_checksums`` also checks its crc32c (slow:
    pure Python, a few seconds per 10 MB).
    """
    prefix_s = str(prefix)
    index_path = Path(prefix_s + ".index")
    if not index_path.is_file():
        raise CheckpointFormatError(f"checkpoint index not found: {index_path}")
    header, entries = read_bundle_index(index_path)
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, entry in entries.items():
        if not include_optimizer and is_optimizer_slot(name):
            continue
        if entry.sliced:
            raise CheckpointFormatError(f"tensor {name!r} is stored in slices (unsupported)")
        if entry.shard_id not in shards:
            shard_path = Path(f"{prefix_s}.data-{entry.shard_id:05d}-of-{header.num_shards:05d}")
            try:
                shards[entry.shard_id] = shard_path.read_bytes()
            except OSError as exc:
                raise CheckpointFormatError(
                    f"cannot read checkpoint data shard {shard_path}: {exc}"
                ) from exc
        shard = shards[entry.shard_id]
        dtype = entry.numpy_dtype
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise CheckpointFormatError(
                f"tensor {name!r}: index says {entry.size} bytes but shape {entry.shape} of "
                f"{dtype} needs {expected}"
            )
        if entry.offset + entry.size > len(shard):
            raise CheckpointFormatError(
                f"tensor {name!r} lies past the end of its data shard "
                f"({entry.offset}+{entry.size} > {len(shard)} bytes); the file is truncated"
            )
        raw = shard[entry.offset : entry.offset + entry.size]
        if verify_checksums and entry.crc32c is not None:
            got = crc32c(raw)
            if got != entry.crc32c and _unmask_crc(entry.crc32c) != got:
                raise CheckpointFormatError(f"tensor {name!r}: crc32c mismatch")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
    return out
