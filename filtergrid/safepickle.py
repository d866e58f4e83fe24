"""A pickle reader that builds data and runs no code, for checkpoints written by strangers.

Pickle is a little program: GLOBAL names any importable callable and REDUCE calls it. This
unpickler imports nothing. A global is resolved, in this order, to

* an entry of the caller's *allow-list*: a value or a function filtergrid wrote itself (the torch
  converter maps ``torch._utils._rebuild_tensor_v2`` to a function that records a lazy tensor);
* a refusal (:class:`UnsafeFileError` naming the global) when it names something that can run
  code, touch files or the network (``os.system``, ``builtins.eval``, ``functools.partial`` ...);
* otherwise a :class:`Global`: a name, never imported. Calling one (REDUCE, NEWOBJ, INST, OBJ)
  makes a :class:`Placeholder` that records the arguments and the state BUILD gives it, the way
  Netron shows a pickled ``nn.Module`` without PyTorch.

Nothing else is callable: REDUCE on a placeholder, a string or a list is refused, BUILD never
calls ``__setstate__``, the copyreg extension registry is not consulted, and a bytes object that
holds another pickle stays bytes. Input is bounded by ``limits.MAX_PICKLE_BYTES`` and the opcodes
run (each may make an object) by ``limits.MAX_PICKLE_OPS``; every malformed stream (bad memo
index, empty stack, truncated data) ends as :class:`CorruptFileError`. Objects from a pickle are
only ever shown through :func:`shown` (bounded, never a full ``repr``).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import re
import reprlib
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import limits
from .errors import CorruptFileError, FiltergridError, LimitError, UnreadableFeatureError, UnsafeFileError, plain
from .safeio import MappedFile

#: What the unpickler reads: a file, or a mapped one whose large reads are views (array payloads).
PickleFile = BinaryIO | MappedFile


@dataclass(frozen=True)
class Global:
    """A class or function the pickle names; filtergrid never imports it."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Placeholder:
    """An instance of a class filtergrid does not import: what the pickle said, and no behaviour."""

    cls: Global
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    state: Any = None
    items: list = field(default_factory=list)
    entries: dict = field(default_factory=dict)

    # APPEND(S) and SETITEM(S) on an object of a class we don't run: record, like a list or dict.
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: list) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def __repr__(self) -> str:
        return f"<{self.cls.qualname} placeholder>"


@dataclass(frozen=True)
class Allowed:
    """A function the allow-list lets a pickle call; it is filtergrid's own and checks its arguments."""

    qualname: str
    call: Callable[..., Any]


#: Globals whose module or qualified name starts with one of these run code, import modules, open
#: files or sockets, or load another pickle: a model file that names one is refused outright.
DENIED = frozenset({
    # processes, the interpreter, imports and code objects
    "os", "posix", "nt", "subprocess", "commands", "sys", "runpy", "importlib", "imp", "pkgutil",
    "zipimport", "code", "codeop", "pdb", "bdb", "trace", "profile", "cProfile", "timeit", "doctest",
    "pydoc", "idlelib", "lib2to3", "types", "inspect", "ctypes", "_ctypes", "cffi", "marshal",
    "pickle", "_pickle", "cPickle", "copyreg", "copy_reg", "shelve", "dill", "cloudpickle", "joblib",
    "multiprocessing", "threading", "_thread", "concurrent", "signal", "atexit", "gc", "pty",
    "resource", "ensurepip", "pip", "setuptools", "distutils", "venv", "site", "sysconfig",
    # calling indirection: partial(os.system, ...), attrgetter, methodcaller
    "functools", "_functools", "operator", "_operator", "itertools",
    # files, archives, codecs that read files
    "io", "_io", "pathlib", "shutil", "tempfile", "glob", "fileinput", "zipfile", "tarfile",
    "codecs", "linecache",
    # network
    "socket", "_socket", "ssl", "http", "httplib", "urllib", "urllib2", "requests", "aiohttp",
    "asyncio", "ftplib", "smtplib", "telnetlib", "poplib", "imaplib", "xmlrpc", "webbrowser",
    # library entry points that load pickles, compile or run code
    "numpy.load", "numpy.loads", "numpy.fromfile", "numpy.memmap", "numpy.f2py", "numpy.testing",
    "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio", "pandas.read_pickle", "pandas.io",
    "torch.load", "torch.hub", "torch.serialization", "torch._C", "torch.ops", "torch.jit",
    "torch.compile", "torch._dynamo", "torch._inductor", "torch.package", "torch.utils.cpp_extension",
    "torch.utils.collect_env", "torch.utils.bottleneck", "torch.utils._config_module",
    "torch.utils.data.datapipes.utils.decoder", "torch.fx.experimental", "torch.distributed.rpc",
    "builtins",
})

#: The builtins a pickle may name (via the allow-list); every other builtin is refused.
_CODE_RUNNING_BUILTINS = frozenset({
    "eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open", "input",
    "breakpoint", "globals", "locals", "vars", "apply", "execfile", "reload", "help", "exit", "quit",
})

#: Longest module + name a global may have (real ones are under 200 characters).
_MAX_GLOBAL_CHARS = 1000
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

#: Text encodings ``_codecs.encode`` may use (protocol-2 pickles spell bytes this way); no codec
#: that decompresses or reads files.
_TEXT_ENCODINGS = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"})


def _iterable(value: Any, what: str) -> list | tuple | set | frozenset:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise CorruptFileError(f"{what} needs a list or tuple, got {type(value).__name__}")
    return value


def _set(items: Any = ()) -> set:
    return set(_iterable(items, "set()"))


def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(_iterable(items, "frozenset()"))


def _ordered_dict(items: Any = ()) -> OrderedDict:
    if isinstance(items, dict):
        return OrderedDict(items)
    return OrderedDict(_iterable(items, "OrderedDict()"))


def _slice(*args: Any) -> slice:
    if len(args) > 3 or not all(a is None or isinstance(a, int) for a in args):
        raise CorruptFileError("slice() takes up to three integers")
    return slice(*args)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise CorruptFileError("complex() takes two numbers")
    return complex(real, imag)


def _bytes(data: Any = b"", *encoding: Any) -> bytes:
    # Never bytes(n): an integer argument allocates n bytes the file never held.
    if isinstance(data, (bytes, bytearray)) and not encoding:
        return bytes(data)
    if isinstance(data, str) and encoding and encoding[0] in _TEXT_ENCODINGS:
        return data.encode(encoding[0])
    raise CorruptFileError("bytes() and bytearray() take bytes, or text with a text encoding")


def _bytearray(data: Any = b"", *encoding: Any) -> bytearray:
    return bytearray(_bytes(data, *encoding))


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if not isinstance(text, str) or encoding not in _TEXT_ENCODINGS or errors != "strict":
        raise CorruptFileError(f"_codecs.encode() is only allowed on text with a text encoding, not {encoding!r}")
    return text.encode(encoding)


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Placeholder:
    """copyreg._reconstructor (protocol 0/1 objects): an instance of a class we never import."""
    if not isinstance(cls, Global):
        raise UnsafeFileError(f"copyreg._reconstructor of {_describe(cls)} is not allowed")
    return Placeholder(cls, (state,) if state is not None else ())


#: The functions of ours that stand in for allow-listed builtins and standard-library names.
_BASE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "builtins.set": _set,
    "builtins.frozenset": _frozenset,
    "builtins.slice": _slice,
    "builtins.complex": _complex,
    "builtins.bytes": _bytes,
    "builtins.bytearray": _bytearray,
    "collections.OrderedDict": _ordered_dict,
    "_codecs.encode": _encode,
    "copyreg._reconstructor": _reconstructor,
}

#: Allow-listed builtins and standard-library names every caller gets.
BASE_ALLOWED: dict[str, Any] = {q: Allowed(q, fn) for q, fn in _BASE_FUNCTIONS.items()} | {
    "builtins.object": Global("builtins", "object")}  # the base class copyreg._reconstructor names


def check_global(module: str, name: str) -> None:
    """Refuse a global that is not a dotted Python name or that can run code.

    Both the spelling in the file and its Python 3 name (``__builtin__`` -> ``builtins``) are checked.
    """
    too_long = len(module) + len(name) > _MAX_GLOBAL_CHARS
    if too_long or not _DOTTED_NAME.match(module) or not _DOTTED_NAME.match(name):
        raise UnsafeFileError(f"refused to load global {shown(module)} {shown(name)}: not a Python name")
    python3 = _python3_name(module, name)
    for mod, nam in (python3, (module, name)):
        reason = _refusal(mod, nam)
        if reason:
            written = f" (written {module}.{name})" if python3 != (module, name) else ""
            raise UnsafeFileError(f"refused to load global {mod}.{nam}{written}: {reason}")


def _refusal(module: str, name: str) -> str | None:
    if module == "builtins":
        if name.split(".")[0] in _CODE_RUNNING_BUILTINS:
            return "it can run code"
        return "only set, frozenset, slice, complex, bytes, bytearray and object are allowed from builtins"
    qualname = f"{module}.{name}"
    if any(qualname == prefix or qualname.startswith(prefix + ".") for prefix in DENIED):
        return "it can run code"
    return None


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 spellings (``__builtin__``, ``copy_reg``) as Python 3 names, so checks see them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _BoundedRepr(reprlib.Repr):
    """``repr`` cut to a few items per level and a few levels: a list shared 2^44-fold stays short."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 2, 60, 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 4

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() <= 64 else f"<{x.bit_length()}-bit int>"  # str(10**5000) fails

    def repr_instance(self, x: Any, level: int) -> str:
        return repr(x) if isinstance(x, (Global, Placeholder, float, complex, bool)) else f"<{type(x).__name__}>"


_SHOWN = _BoundedRepr()


def shown(value: Any) -> str:
    """A short, bounded text for an object built from a pickle (for error messages)."""
    return _SHOWN.repr(value)[:160]


def _describe(value: Any) -> str:
    if isinstance(value, Global):
        return value.qualname
    if isinstance(value, Placeholder):
        return f"a {value.cls.qualname} object"
    return f"a {type(value).__name__}"


class _Budget:
    """File reads for the unpickler, refused past ``limit`` bytes copied (a pickle has no declared
    length); views of a mapped file copy nothing and are bounded by the file."""

    def __init__(self, file: PickleFile, limit: int):
        self._file = file
        self._left = limit
        self._limit = limit

    def _take(self, data: bytes) -> bytes:
        if len(data) > self._left:
            raise limits.exceeded("MAX_PICKLE_BYTES", "pickle size in bytes")
        self._left -= len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        if n >= MappedFile.VIEW_BYTES and isinstance(self._file, MappedFile):  # most reads are 1-9 bytes
            # A view of the mapped file, nothing copied: the pure unpickler only pushes a large
            # read (a bytes payload) or decodes it, which a memoryview supports as bytes do.
            return self._file.view(n)  # type: ignore[return-value]
        # A declared length past the budget reads one byte more than the budget: a short file
        # then fails as truncated, a long one as over the limit.
        return self._take(self._file.read(n if 0 <= n <= self._left else self._left + 1))

    def readline(self) -> bytes:
        return self._take(self._file.readline(self._left + 1))


class _Opcodes(dict):
    def __missing__(self, code: int):
        raise UnreadableFeatureError(f"pickle uses opcode 0x{code:02x}, which filtergrid does not read")


#: Opcodes that only build data (numbers, strings, containers, memo and stack moves); the others
#: are filtergrid's own below.
_DATA_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS", "FROZENSET",
    "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "GLOBAL", "STACK_GLOBAL", "PERSID", "BINPERSID",
})


#: Python's pure unpickler, whose opcode methods typeshed does not list.
_PURE: Any = pickle._Unpickler


class SafeUnpickler(pickle._Unpickler):
    """Python's pure unpickler with every code-running opcode replaced (see the module docstring).

    The pure-Python base is used (not ``pickle.Unpickler``) because the C one calls ``__setstate__``
    and ``cls.__new__`` on its own; here each opcode that could call something is ours.
    """

    # What the pure-Python base sets up in ``load()`` (typeshed does not describe its internals).
    stack: list[Any]
    metastack: list[list[Any]]
    read: Callable[[int], bytes]
    readline: Callable[[], bytes]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, file: PickleFile, allowed: Mapping[str, Any] = BASE_ALLOWED,
                 persistent_load: Callable[[Any], Any] | None = None,
                 build_ignored: tuple[type, ...] = (dict,)):
        super().__init__(_Budget(file, limits.MAX_PICKLE_BYTES), encoding="utf-8")
        self._ops_left = limits.MAX_PICKLE_OPS
        self._allowed = allowed
        self._persistent = persistent_load
        self._build_ignored = build_ignored
        self._tuple_depths: dict[int, tuple[tuple, int]] = {}  # id -> (tuple kept alive, depth)

    def find_class(self, module: str, name: str) -> Any:
        python3 = _python3_name(module, name)
        for mod, nam in ((module, name), python3):
            if f"{mod}.{nam}" in self._allowed:
                return self._allowed[f"{mod}.{nam}"]
        check_global(module, name)
        return Global(*python3)

    def count_opcode(self) -> None:
        """Charge one opcode: each may push an object, so a deflated run of MARKs is stopped here."""
        self._ops_left -= 1
        if self._ops_left < 0:
            raise limits.exceeded("MAX_PICKLE_OPS", "opcodes run by the pickle")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CorruptFileError("pickle refers to external data (persistent id) where none is expected")
        return self._persistent(pid)

    def _call(self, func: Any, args: Any, kwargs: dict | None = None) -> Any:
        if not isinstance(args, tuple):
            raise CorruptFileError(f"pickle calls {_describe(func)} with {_describe(args)} instead of an argument tuple")
        if isinstance(func, Global):
            return Placeholder(func, args, kwargs or {})
        if isinstance(func, Allowed) and not kwargs:
            return func.call(*args)
        raise UnsafeFileError(f"pickle tries to call {_describe(func)}, which filtergrid does not call")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        if not isinstance(kwargs, dict):
            raise CorruptFileError("NEWOBJ_EX keyword arguments are not a dict")
        self.stack[-1] = self._call(self.stack[-1], args, kwargs)

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        func = self.find_class(module, name)
        self.append(self._call(func, tuple(self.pop_mark())))

    def load_obj(self) -> None:
        args = self.pop_mark()
        if not args:
            raise CorruptFileError("OBJ without a class")
        func = args.pop(0)
        self.append(self._call(func, tuple(args)))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Placeholder):
            inst.state = state
        elif not isinstance(inst, self._build_ignored):
            raise UnreadableFeatureError(f"pickle sets the state of {_describe(inst)}, which filtergrid does not do")

    def _nesting(self, value: Any) -> int:
        known = self._tuple_depths.get(id(value))
        return known[1] if known is not None and known[0] is value else 0

    def _check_tuple(self) -> None:
        """Bound how deeply tuples nest: hashing a million nested tuples (a dict key) overflows
        CPython's C stack, which no exception handler can catch."""
        made = self.stack[-1]
        depth = 1 + max(map(self._nesting, made), default=0)
        limits.check("MAX_NESTING", depth, "depth of nested tuples in the pickle")
        self._tuple_depths[id(made)] = (made, depth)

    def load_tuple(self) -> None:
        _PURE.load_tuple(self)
        self._check_tuple()

    def load_tuple1(self) -> None:
        _PURE.load_tuple1(self)
        self._check_tuple()

    def load_tuple2(self) -> None:
        _PURE.load_tuple2(self)
        self._check_tuple()

    def load_tuple3(self) -> None:
        _PURE.load_tuple3(self)
        self._check_tuple()

    def load_mark(self) -> None:
        """MARK starts a container's items: marks nest as deep as the containers, never deeper than
        MAX_NESTING (64 Mi MARKs deflate to 64 KB and would make 64 Mi lists)."""
        limits.check("MAX_NESTING", len(self.metastack) + 1, "depth of open MARKs in the pickle")
        _PURE.load_mark(self)

    def load_bytearray8(self) -> None:
        """BYTEARRAY8, reading before allocating: pickle's own zeroes ``bytearray(declared length)``
        first, so 108 bytes could claim (and touch) gigabytes. Found by fuzzing."""
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(size)
        if len(data) != size:
            raise CorruptFileError(f"pickle ends inside a {size:,}-byte bytearray")
        self.append(bytearray(data))

    def load_ext(self) -> None:
        raise UnreadableFeatureError("pickle uses the copyreg extension registry (EXT opcodes), which filtergrid does not read")

    dispatch = _Opcodes()


def _opcode(name: str) -> int:
    return getattr(pickle, name)[0]


def _counted(run: Callable[[Any], None]) -> Callable[[Any], None]:
    def counted(unpickler: SafeUnpickler) -> None:
        unpickler.count_opcode()
        run(unpickler)

    return counted


SafeUnpickler.dispatch.update({_opcode(n): pickle._Unpickler.dispatch[_opcode(n)] for n in _DATA_OPCODES})
SafeUnpickler.dispatch.update({
    _opcode("REDUCE"): SafeUnpickler.load_reduce, _opcode("NEWOBJ"): SafeUnpickler.load_newobj,
    _opcode("NEWOBJ_EX"): SafeUnpickler.load_newobj_ex, _opcode("INST"): SafeUnpickler.load_inst,
    _opcode("OBJ"): SafeUnpickler.load_obj, _opcode("BUILD"): SafeUnpickler.load_build,
    _opcode("EXT1"): SafeUnpickler.load_ext, _opcode("EXT2"): SafeUnpickler.load_ext,
    _opcode("EXT4"): SafeUnpickler.load_ext,
    _opcode("TUPLE"): SafeUnpickler.load_tuple, _opcode("TUPLE1"): SafeUnpickler.load_tuple1,
    _opcode("TUPLE2"): SafeUnpickler.load_tuple2, _opcode("TUPLE3"): SafeUnpickler.load_tuple3,
    _opcode("BYTEARRAY8"): SafeUnpickler.load_bytearray8, _opcode("MARK"): SafeUnpickler.load_mark,
})
SafeUnpickler.dispatch.update({code: _counted(run) for code, run in SafeUnpickler.dispatch.items()})


#: What a malformed stream makes the pure unpickler raise; all of them mean a corrupt file.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError,
              AttributeError, struct.error, UnicodeError, OverflowError, RecursionError)


def load(file: PickleFile, allowed: Mapping[str, Any] = BASE_ALLOWED,
         persistent_load: Callable[[Any], Any] | None = None,
         build_ignored: tuple[type, ...] = (dict,), what: str = "pickle") -> Any:
    """One pickle from ``file`` (left positioned right after its STOP), built without running code."""
    return run(SafeUnpickler(file, allowed, persistent_load, build_ignored), what)


def run(unpickler: SafeUnpickler, what: str = "pickle") -> Any:
    """Load with ``unpickler`` (a SafeUnpickler or subclass), every failure as a FiltergridError."""
    try:
        return unpickler.load()
    except FiltergridError:
        raise
    except MemoryError:
        raise LimitError(f"{what} needs more memory than is available") from None
    except _MALFORMED as e:
        raise CorruptFileError(f"{what} is malformed: {plain(e)}") from None


def loads(data: bytes, allowed: Mapping[str, Any] = BASE_ALLOWED,
          persistent_load: Callable[[Any], Any] | None = None,
          build_ignored: tuple[type, ...] = (dict,), what: str = "pickle") -> Any:
    """:func:`load` from bytes already in memory (a zip member)."""
    limits.check("MAX_PICKLE_BYTES", len(data), f"bytes of {what}")
    return load(io.BytesIO(data), allowed, persistent_load, build_ignored, what)
