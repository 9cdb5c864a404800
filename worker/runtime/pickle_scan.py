"""Checks a record batch's pickle opcodes before CPython's unpickler sees them.

The record codec (``codec.py``) decodes batches that hold class instances with pickle; its
allow-list of classes decides which globals resolve, but some opcodes do harm without naming any
global, and the C unpickler acts on them before anything can refuse them: a ``LONG_BINPUT`` or
``PUT`` index of 2**27 makes it allocate and clear a 2 GiB memo from an 11-byte batch; a
``BYTEARRAY8`` length is allocated before the bytes are read (and on CPython 3.11 a failed
allocation then reads an uninitialised field); ``PERSID``/``EXT*`` reach hooks and registries;
the text opcodes of protocols 0-1 are never written by protocol 5. ``check_opcodes`` walks the
stream once and accepts only the opcodes protocol 5 writes for records, every length inside the
data, so decoding allocates no more than a small multiple of the batch's size. Called by
``RecordCodec.decode``; the fuzz target ``record_codec`` drives it with arbitrary bytes.
"""

from __future__ import annotations

import pickle
import re
from typing import Final

from streamjob.worker.errors import SerializationError

_FORBIDDEN: Final = -1
_LEN1: Final = -2
_LEN4: Final = -3
_LEN8: Final = -4
_FRAME: Final = -5

_FIXED: Final[dict[bytes, int]] = {
    # structure
    pickle.PROTO: 1, pickle.STOP: 0, pickle.MARK: 0, pickle.POP: 0, pickle.POP_MARK: 0,
    # scalars
    pickle.NONE: 0, pickle.NEWTRUE: 0, pickle.NEWFALSE: 0, pickle.BININT: 4, pickle.BININT1: 1,
    pickle.BININT2: 2, pickle.BINFLOAT: 8,
    # containers
    pickle.EMPTY_LIST: 0, pickle.APPEND: 0, pickle.APPENDS: 0, pickle.EMPTY_TUPLE: 0, pickle.TUPLE: 0,
    pickle.TUPLE1: 0, pickle.TUPLE2: 0, pickle.TUPLE3: 0, pickle.EMPTY_DICT: 0, pickle.SETITEM: 0,
    pickle.SETITEMS: 0, pickle.EMPTY_SET: 0, pickle.ADDITEMS: 0, pickle.FROZENSET: 0,
    # memo: MEMOIZE appends one slot per opcode; gets only read (bounds-checked)
    pickle.MEMOIZE: 0, pickle.BINGET: 1, pickle.LONG_BINGET: 4,
    # objects: the class comes from STACK_GLOBAL, which resolves only allowed classes
    pickle.STACK_GLOBAL: 0, pickle.REDUCE: 0, pickle.BUILD: 0, pickle.NEWOBJ: 0, pickle.NEWOBJ_EX: 0,
}  # fmt: skip
_SIZED: Final[dict[bytes, int]] = {
    pickle.LONG1: _LEN1, pickle.SHORT_BINUNICODE: _LEN1, pickle.SHORT_BINBYTES: _LEN1,
    pickle.LONG4: _LEN4, pickle.BINUNICODE: _LEN4, pickle.BINBYTES: _LEN4,
    pickle.BINUNICODE8: _LEN8, pickle.BINBYTES8: _LEN8, pickle.BYTEARRAY8: _LEN8, pickle.FRAME: _FRAME,
}  # fmt: skip

_TABLE: Final[tuple[int, ...]] = tuple(
    _FIXED.get(bytes([op]), _SIZED.get(bytes([op]), _FORBIDDEN)) for op in range(256)
)
_WIDTH: Final = {_LEN1: 1, _LEN4: 4, _LEN8: 8}
_STOP: Final = pickle.STOP[0]
_NAMES: Final[dict[int, str]] = {
    value[0]: name
    for name, value in vars(pickle).items()
    if name.isupper() and isinstance(value, bytes) and len(value) == 1
}


def _simple_run() -> re.Pattern[bytes]:
    """A regex matching a run of opcodes whose size is fixed (all but STOP, FRAME and the sized ones)."""
    by_size: dict[int, list[int]] = {}
    for op, step in enumerate(_TABLE):
        if step >= 0 and op != _STOP:
            by_size.setdefault(step, []).append(op)
    alternatives = [
        b"[" + b"".join(re.escape(bytes([op])) for op in ops) + b"]" + (b"." * size)
        for size, ops in sorted(by_size.items())
    ]
    return re.compile(b"(?:" + b"|".join(alternatives) + b")*+", re.DOTALL)


_SIMPLE_RUN: Final = _simple_run()


def check_opcodes(data: bytes) -> None:
    """Raises SerializationError unless ``data`` is protocol-5 record opcodes ending in STOP at its end.

    Runs of fixed-size opcodes are skipped by one regex match (C speed); Python looks only at
    STOP, FRAME and the opcodes that carry a length.
    """
    skip = _SIMPLE_RUN.match
    end = len(data)
    i = 0
    while True:
        i = skip(data, i).end()  # type: ignore[union-attr]  # a possessive * always matches
        if i >= end:
            raise SerializationError("a record batch ends before its STOP opcode (a truncated or damaged batch)")
        op = data[i]
        step = _TABLE[op]
        if op == _STOP:
            if i + 1 != end:
                raise SerializationError("a record batch has bytes after its end (a damaged or forged batch)")
            return
        if step >= 0:  # a fixed-size opcode the run did not take: its argument is cut off
            raise SerializationError("a record batch ends inside an opcode (a truncated or damaged batch)")
        if step == _FORBIDDEN:
            raise SerializationError(
                f"refusing the pickle opcode {_NAMES.get(op, hex(op))} at byte {i} of a record batch: the codec "
                "never writes it (a damaged or forged batch)"
            )
        if step == _FRAME:  # announces the size of the opcodes that follow: never beyond the data
            if int.from_bytes(data[i + 1 : i + 9], "little") > end - i - 9:
                raise SerializationError("a record batch announces a frame longer than itself (a damaged batch)")
            i += 9
            continue
        width = _WIDTH[step]
        size = int.from_bytes(data[i + 1 : i + 1 + width], "little")
        if size > end - i - 1 - width:
            raise SerializationError(f"a record batch announces {size} bytes at byte {i}, more than it holds")
        i += 1 + width + size
