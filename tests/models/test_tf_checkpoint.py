"""The tensor-bundle reader, on bundles written here by hand and on the musicnn wheel's."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from storycue.errors import ConfigurationError
from storycue.models.musicnn.checkpoint import (
    TABLE_MAGIC,
    CheckpointFormatError,
    crc32c,
    is_optimizer_slot,
    read_bundle,
    read_bundle_index,
    read_sstable,
)


# ---- a minimal writer of the format (LevelDB table + BundleEntryProto) ------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def field_bytes(num: int, value: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(value)) + value


def field_fixed32(num: int, value: int) -> bytes:
    return varint(num << 3 | 5) + struct.pack("<I", value)


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def build_block(items: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out = bytearray()
    restarts: list[int] = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        prev = key
    for r in restarts:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def build_table(items: list[tuple[bytes, bytes]], *, per_block: int = 3, ctype: int = 0) -> bytes:
    """A table with several data blocks, an empty metaindex, an index block and a footer."""
    data = bytearray()

    def add_block(block: bytes) -> bytes:
        handle = varint(len(data)) + varint(len(block))
        trailer = bytes([ctype]) + struct.pack("<I", mask(crc32c(block + bytes([ctype]))))
        data.extend(block + trailer)
        return handle

    index_items = []
    for i in range(0, len(items), per_block):
        chunk = items[i : i + per_block]
        index_items.append((chunk[-1][0], add_block(build_block(chunk))))
    meta_handle = add_block(build_block([]))
    index_handle = add_block(build_block(index_items, restart_interval=1))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    return bytes(data + footer)


DTYPE_ENUM = {np.dtype("<f4"): 1, np.dtype("<i4"): 3, np.dtype("<i8"): 9, np.dtype("<f2"): 19}


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray], *, lie_size: bool = False) -> None:
    blob = bytearray()
    items: list[tuple[bytes, bytes]] = []
    header = field_varint(1, 1) + field_bytes(3, field_varint(1, 1))
    items.append((b"", header))
    for name in sorted(tensors):
        arr = np.array(tensors[name], order="C")  # (ascontiguousarray makes scalars 1-D)
        raw = arr.tobytes()
        shape = b"".join(field_bytes(2, field_varint(1, d)) for d in arr.shape)
        entry = (
            field_varint(1, DTYPE_ENUM[arr.dtype])
            + field_bytes(2, shape)
            + (field_varint(4, len(blob)) if blob else b"")
            + field_varint(5, len(raw) + (4 if lie_size else 0))
            + field_fixed32(6, mask(crc32c(raw)))
        )
        items.append((name.encode(), entry))
        blob += raw
    Path(str(prefix) + ".index").write_bytes(build_table(items))
    Path(str(prefix) + ".data-00000-of-00001").write_bytes(bytes(blob))


# ---- tests ---------------------------------------------------------------------------------
def test_crc32c_known_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_roundtrip_handwritten_bundle(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {
        "dense/kernel": rng.standard_normal((7, 5)).astype(np.float32),
        "dense/bias": rng.standard_normal(5).astype(np.float32),
        "dense/bias/Adam": np.zeros(5, np.float32),
        "dense/bias/Adam_1": np.zeros(5, np.float32),
        "beta1_power": np.array(0.9, np.float32),
        "conv/kernel": rng.standard_normal((3, 1, 1, 4)).astype(np.float32),
        "conv/kernel_other": np.arange(6, dtype=np.int64).reshape(2, 3),
        "half": np.array([1.5, -2.0], dtype=np.float16),
        "scalar_int": np.array(42, np.int32),
    }
    write_bundle(tmp_path / "model", tensors)
    header, entries = read_bundle_index(tmp_path / "model.index")
    assert header.num_shards == 1 and header.version_producer == 1
    assert set(entries) == set(tensors)
    assert entries["dense/kernel"].shape == (7, 5)
    assert entries["beta1_power"].shape == ()

    loaded = read_bundle(tmp_path / "model", verify_checksums=True)
    assert set(loaded) == {"dense/kernel", "dense/bias", "conv/kernel", "conv/kernel_other",
                           "half", "scalar_int"}  # fmt: skip
    for name, arr in loaded.items():
        assert arr.dtype == tensors[name].dtype
        np.testing.assert_array_equal(arr, tensors[name])
    everything = read_bundle(tmp_path / "model", include_optimizer=True)
    assert set(everything) == set(tensors)


def test_prefix_compressed_keys_across_blocks(tmp_path: Path) -> None:
    items = [(f"layer/{i:03d}/weights".encode(), bytes([i]) * i) for i in range(40)]
    (tmp_path / "t.index").write_bytes(build_table(items, per_block=7))
    assert read_sstable(tmp_path / "t.index") == dict(items)


def test_optimizer_slot_names() -> None:
    assert is_optimizer_slot("conv2d/kernel/Adam")
    assert is_optimizer_slot("conv2d/kernel/Adam_1")
    assert is_optimizer_slot("beta2_power")
    assert not is_optimizer_slot("conv2d/kernel")
    assert not is_optimizer_slot("batch_normalization/beta")


def test_snappy_block_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "s.index").write_bytes(build_table([(b"a", b"1")], ctype=1))
    with pytest.raises(CheckpointFormatError, match="snappy"):
        read_sstable(tmp_path / "s.index")


def test_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "x.index").write_bytes(b"not a checkpoint at all" * 4)
    with pytest.raises(CheckpointFormatError, match="magic"):
        read_sstable(tmp_path / "x.index")
    (tmp_path / "y.index").write_bytes(b"short")
    with pytest.raises(CheckpointFormatError, match="footer"):
        read_sstable(tmp_path / "y.index")


def test_corrupt_block_checksum(tmp_path: Path) -> None:
    table = bytearray(build_table([(b"key", b"value")]))
    table[5] ^= 0xFF
    (tmp_path / "c.index").write_bytes(bytes(table))
    with pytest.raises(CheckpointFormatError, match="checksum"):
        read_sstable(tmp_path / "c.index")


def test_size_mismatch_and_truncated_data(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w": np.ones(4, np.float32)}, lie_size=True)
    with pytest.raises(CheckpointFormatError, match="bytes but shape"):
        read_bundle(tmp_path / "m")
    write_bundle(tmp_path / "n", {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)})
    data = tmp_path / "n.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-3])
    with pytest.raises(CheckpointFormatError, match="past the end"):
        read_bundle(tmp_path / "n")


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="not found"):
        read_bundle(tmp_path / "absent")


def test_real_musicnn_checkpoint() -> None:
    from storycue.models.musicnn import resolve_weights_dir

    try:
        wdir = resolve_weights_dir()
    except ConfigurationError as exc:
        pytest.skip(f"musicnn weights not available: {exc}")
    _, entries = read_bundle_index(wdir / "MTT_musicnn" / ".index")
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert entries["dense/kernel"].shape == (1506, 200)
    assert any(is_optimizer_slot(n) for n in entries)  # Adam slots are stored, and skipped:
    weights = read_bundle(str(wdir / "MTT_vgg") + "/", verify_checksums=True)
    assert len(weights) == 36 and not any(is_optimizer_slot(n) for n in weights)
    assert weights["5CNN/kernel"].shape == (3, 3, 128, 128)
    assert weights["dense/kernel"].dtype == np.float32
