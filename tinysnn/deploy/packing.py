"""Integer codes packed at their bit widths: the bytes an exported model takes (numpy only).

:func:`tinysnn.memory.packed_size_bytes` counts with these functions, and the model format
(:mod:`tinysnn.deploy.model`) stores its payload with them.
"""

from typing import Optional

import numpy as np

__all__ = ["fp32_codes", "pack_codes", "unpack_codes"]


def fp32_codes(values: object) -> np.ndarray:
    """The 32-bit patterns of FP32 values (uint32), to pack fp32 parameters at 32 bits."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32)).view(np.uint32)


def _as_int64(codes: object) -> np.ndarray:
    if hasattr(codes, "detach"):  # a torch tensor, without importing torch here
        codes = codes.detach().cpu().numpy()
    array = np.asarray(codes)
    if array.dtype.kind not in "iub":
        raise ValueError(f"integer codes expected, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False).ravel()


def pack_codes(codes: object, bits: int, signed: Optional[bool] = None) -> bytes:
    """Pack integer codes at ``bits`` bits each, big-endian bit order, into ceil(n bits / 8) bytes.

    Negative codes are stored in two's complement. The last byte is zero-padded.

    Args:
        codes: integer array (numpy, torch or a sequence), any shape; flattened in C order.
        bits: B, bits per code, 1..64.
        signed: check the codes against the signed range [-2^(B-1), 2^(B-1) - 1] (True), the
            unsigned range [0, 2^B - 1] (False) or their union (None).

    Raises:
        ValueError: if a code does not fit in B bits.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits={bits} out of range: expected 1 <= bits <= 64")
    flat = _as_int64(codes)
    if flat.size:
        lo = -(2 ** (bits - 1)) if signed is not False else 0
        hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        if int(flat.min()) < lo or int(flat.max()) > hi:
            raise ValueError(
                f"codes in [{int(flat.min())}, {int(flat.max())}] do not fit {bits} bits ([{lo}, {hi}])"
            )
    words = flat.astype(np.uint64) & np.uint64(2**bits - 1 if bits < 64 else 2**64 - 1)
    if bits in (8, 16, 32, 64):  # whole bytes: a big-endian cast is the packing
        return words.astype(f">u{bits // 8}").tobytes()
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    chunks = []
    for start in range(0, words.size, 1 << 16):  # bounded temporary memory
        part = words[start : start + (1 << 16)]
        chunks.append(((part[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).ravel())
    return np.packbits(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)).tobytes()


def unpack_codes(data: bytes, bits: int, count: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` codes of ``bits`` bits as int64 (uint64 if 64 unsigned)."""
    if len(data) * 8 < count * bits:
        raise ValueError(f"{len(data)} bytes hold fewer than {count} codes of {bits} bits")
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = np.uint64(1) << np.arange(bits - 1, -1, -1, dtype=np.uint64)
    words = (bit_array.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    if not signed:
        return words if bits == 64 else words.astype(np.int64)
    values = words.astype(np.int64)
    if bits < 64:
        values = np.where(values >= 2 ** (bits - 1), values - 2**bits, values)
    return values
