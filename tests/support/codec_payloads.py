"""Forged record batches: the reproduced exploit and its variants, assembled opcode by opcode.

Each payload is a pickle stream (without the codec's format byte) that, loaded by an unrestricted
unpickler, creates the file ``marker``: the proof that it runs code. Used by
``tests/unit/test_codec_attacks.py`` (which checks that the record codec refuses every one) and by
``tests/fuzz/seeds.py`` (which writes them into the fuzz corpus).
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Callable
from typing import Any

JOB = "tests.support.codec_job"


def text(value: str) -> bytes:
    """A str pushed on the unpickler's stack."""
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def glob(module: str, name: str) -> bytes:
    """A global pushed on the stack (STACK_GLOBAL: pickle resolves dotted names by attribute traversal)."""
    return text(module) + text(name) + pickle.STACK_GLOBAL


def value(obj: Any) -> bytes:
    """A plain value's opcodes, without PROTO, memo or STOP."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=3)
    pickler.fast = True
    pickler.dump(obj)
    return buffer.getvalue()[2:-1]


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` via REDUCE."""
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def batch(*records: bytes) -> bytes:
    """A pickle of a list of the given records."""
    return b"\x80\x04" + pickle.EMPTY_LIST + pickle.MARK + b"".join(records) + pickle.APPENDS + pickle.STOP


def records_of(stream: bytes) -> bytes:
    """The records' opcodes of a ``batch()`` stream, to nest them elsewhere."""
    return stream[4:-2]


def _writer_code_args() -> tuple[Any, ...]:
    code = (lambda self, state: open(state, "w").close()).__code__
    return (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_nlocals,
        code.co_stacksize,
        code.co_flags,
        code.co_code,
        code.co_consts,
        code.co_names,
        code.co_varnames,
        code.co_filename,
        code.co_name,
        code.co_qualname,
        code.co_firstlineno,
        code.co_linetable,
        code.co_exceptiontable,
        code.co_freevars,
        code.co_cellvars,
    )


def function_chain(marker: str) -> bytes:
    """The reproduced exploit: CodeType, FunctionType and type reached through ``build``'s attributes.

    Builds a function from a code object, a class whose ``__setstate__`` is that function, and an
    instance of it whose BUILD calls the function with ``marker``.
    """
    code = glob(JOB, "build.__code__.__class__") + value(_writer_code_args()) + pickle.REDUCE
    func = call(glob(JOB, "build.__class__"), code, pickle.EMPTY_DICT)
    cls = call(
        glob(JOB, "build.__class__.__class__"),
        text("X"),
        pickle.EMPTY_TUPLE,
        pickle.EMPTY_DICT + text("__setstate__") + func + pickle.SETITEM,
    )
    instance = cls + pickle.EMPTY_TUPLE + pickle.NEWOBJ + text(marker) + pickle.BUILD
    return batch(value(("ok", 1)), instance)


def reduce_to(module: str, name: str, *args: Any) -> Callable[[str], bytes]:
    """A record that calls ``module.name(*args)``; ``"{marker}"`` in a str argument becomes the marker path."""

    def payload(marker: str) -> bytes:
        filled = [
            a.replace("{marker}", marker)
            if isinstance(a, str)
            else [x.replace("{marker}", marker) for x in a]
            if isinstance(a, list)
            else a
            for a in args
        ]
        return batch(call(glob(module, name), *(value(a) for a in filled)))

    return payload


def reconstructor(marker: str) -> bytes:
    """``copyreg._reconstructor(Popen, Popen, args)``: base.__init__ runs with the arguments given."""
    popen = glob("subprocess", "Popen")
    return batch(call(glob("copyreg", "_reconstructor"), popen, popen, value(["touch", marker])))


def newobj_of_disallowed(marker: str) -> bytes:
    """``copyreg.__newobj__``/``object`` as paths to an arbitrary class, then a REDUCE of os.system."""
    created = call(glob("copyreg", "__newobj__"), glob("subprocess", "Popen"))
    made = call(glob("builtins", "object"))
    return batch(created, made, records_of(reduce_to("os", "system", "touch {marker}")(marker)))


def nested(marker: str) -> bytes:
    """The exploit hidden in a dict inside a tuple, after legitimate records."""
    inner = records_of(function_chain(marker))
    record = pickle.EMPTY_DICT + text("k") + pickle.MARK + value(1) + inner + pickle.TUPLE + pickle.SETITEM
    return batch(value(("a", 1)), value({"x": [1, 2]}), record)


def getattr_chain(marker: str) -> bytes:
    """``getattr(__import__('os'), 'system')('touch marker')`` through allowed-looking builtins."""
    os_module = call(glob("builtins", "__import__"), text("os"))
    system = call(glob("builtins", "getattr"), os_module, text("system"))
    return batch(call(system, text(f"touch {marker}")))


def globals_of_a_job_class(marker: str) -> bytes:
    """A job class's method globals: ``Click.__init__.__globals__`` is the module's namespace."""
    namespace = glob(JOB, "Click.__init__.__globals__")
    return batch(namespace, records_of(reduce_to("os", "system", "touch {marker}")(marker)))


def mutate_a_job_class(marker: str) -> bytes:
    """BUILD on an allowed class object: sets ``Click.__setstate__`` (a class attribute) from a batch."""
    state = value(None) + pickle.EMPTY_DICT + text("__setstate__") + glob(JOB, "Plain") + pickle.SETITEM
    return batch(glob(JOB, "Click") + state + pickle.TUPLE2 + pickle.BUILD, text(marker))


def extension_code(marker: str) -> bytes:
    """EXT1: a global through copyreg's extension registry (os.system registered under code 240)."""
    return (
        b"\x80\x04" + pickle.EXT1 + bytes([240]) + text(f"touch {marker}") + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP
    )


def persistent_id(marker: str) -> bytes:
    """BINPERSID: a persistent id handed to persistent_load."""
    return batch(text(marker) + pickle.BINPERSID)


PAYLOADS: dict[str, Callable[[str], bytes]] = {
    "function_chain": function_chain,
    "os_system": reduce_to("os", "system", "touch {marker}"),
    "posix_system": reduce_to("posix", "system", "touch {marker}"),
    "builtins_eval": reduce_to("builtins", "eval", "open({marker!r}, 'w').close()".replace("{marker!r}", "'{marker}'")),
    "builtins_exec": reduce_to("builtins", "exec", "open('{marker}', 'w').close()"),
    "subprocess_popen": reduce_to("subprocess", "Popen", ["touch", "{marker}"]),
    "subprocess_check_call": reduce_to("subprocess", "check_call", ["touch", "{marker}"]),
    "copyreg_reconstructor": reconstructor,
    "copyreg_newobj": newobj_of_disallowed,
    "nested_in_records": nested,
    "getattr_chain": getattr_chain,
    "job_class_globals": globals_of_a_job_class,
    "mutate_job_class": mutate_a_job_class,
    "extension_registry": extension_code,
    "persistent_id": persistent_id,
}
"""Name → payload builder (the marker path in, the pickle stream out)."""

LIVE = (
    "function_chain",
    "os_system",
    "posix_system",
    "builtins_eval",
    "builtins_exec",
    "subprocess_popen",
    "subprocess_check_call",
    "copyreg_reconstructor",
    "copyreg_newobj",
    "nested_in_records",
    "getattr_chain",
    "job_class_globals",
)
"""Payloads that create the marker when an unrestricted unpickler loads them."""
