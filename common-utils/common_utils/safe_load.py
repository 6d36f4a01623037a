"""The one place that reads weights files; no pickled code ever runs.

Every loader in the repository (our checkpoints, released third-party weights, ``--resume``) reads through
:func:`load_weights`. It looks at the bytes first and dispatches on what the file is, not on its name:

- ``torch.save`` zip or legacy (pre-1.6) file: ``torch.load(weights_only=True)``, which only rebuilds tensors and
  plain containers. A file that legitimately pickles a foreign class (SPAI's ``spai.pth`` holds a yacs CfgNode) is
  read by passing ``stand_ins``: the class name is mapped to an inert stand-in and the file is re-read through
  :data:`restricted_pickle`-style module (a ``find_class`` allow-list) given to torch as ``pickle_module``. The
  module's ``load`` is restricted too, so torch's legacy loader cannot read its header records unrestricted.
- TorchScript archive (OpenAI CLIP ``.pt``): never handed to ``torch.jit.load``. Its ``data.pkl`` is read with the
  restricted unpickler, ``__torch__`` classes become inert records and the tensors come from the archive's records;
  the result is the module's state dict (parameter and buffer names taken from the archive's class declarations).
- safetensors: ``safetensors.torch.load_file`` (no pickle in the format).
- A raw pickle, a legacy ``.tar`` checkpoint, a numpy file or anything else is refused without being unpickled.

Errors are :class:`WeightsFileError` (a :class:`~common_utils.data.DataFormatError`): one line naming the file, what is
wrong and what to do. A missing file is a ``FileNotFoundError`` naming it.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .data.errors import DataFormatError

__all__ = [
    "WeightsFileError", "MappingStandIn", "detect_format", "load_bytes", "load_weights", "read_state_dict",
    "read_torchscript_state_dict", "restricted_pickle_module", "restricted_unpickler",
]

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first record of a legacy torch.save file (torch.serialization.MAGIC_NUMBER)
_CONVERT_HINT = ("if you trust the file, re-save its tensors once, in a separate trusted environment, as a plain "
                 "state dict (torch.save) or as safetensors")


class WeightsFileError(DataFormatError):
    """A weights file that is refused (it would run code when unpickled) or cannot be read."""


class MappingStandIn(dict):
    """Stands in for a pickled dict subclass (e.g. ``yacs.config.CfgNode``): keeps the items, drops its state."""

    def __setstate__(self, state):
        """The class's own bookkeeping attributes (e.g. yacs' immutability flag and key registries) are discarded."""


# ------------------------------------------------------------------------------------------ restricted unpickling

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}

# globals a weights file may name: tensor rebuilding and plain containers. Everything else is refused.
_BASE_ALLOWED: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set, "__builtin__.set": set,
    "builtins.frozenset": frozenset, "__builtin__.frozenset": frozenset,
}


def _refusal(module: str, name: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns the globals of ``allowed`` (class attribute)."""

    allowed: Mapping[str, Any] = {}

    def find_class(self, module, name):
        try:
            return self.allowed[f"{module}.{name}"]
        except KeyError:
            raise _refusal(module, name) from None


def restricted_unpickler(allowed: Mapping[str, Any]) -> type[pickle.Unpickler]:
    """An ``Unpickler`` class that resolves only ``allowed`` globals (``{"module.name": object}``); any other global
    in the data raises ``pickle.UnpicklingError`` naming it, before anything is called."""
    return type("RestrictedUnpickler", (_RestrictedUnpickler,), {"allowed": dict(allowed)})


def restricted_pickle_module(stand_ins: Mapping[str, Any] | None = None) -> types.SimpleNamespace:
    """A module-like object torch accepts as ``pickle_module`` (zip and legacy formats alike).

    Its ``Unpickler`` and its ``load`` both resolve globals only from the allow-list: torch's tensor rebuild
    functions, OrderedDict, set/frozenset, plus ``stand_ins`` (``{"module.Class": replacement}``). Torch's legacy
    loader calls ``pickle_module.load`` for the file's header records, so a plain ``pickle.load`` there would be a
    bypass.
    """
    unpickler = restricted_unpickler({**_BASE_ALLOWED, **dict(stand_ins or {})})

    def load(file, **kwargs):
        return unpickler(file, **kwargs).load()

    return types.SimpleNamespace(Unpickler=unpickler, load=load, __name__="common_utils_restricted_pickle")


# ---------------------------------------------------------------------------------------------- format detection


def detect_format(path: str | os.PathLike) -> str:
    """What a file is, from its bytes (nothing is unpickled): ``"torch-zip"``, ``"torchscript"``,
    ``"torch-legacy"``, ``"torch-legacy-tar"``, ``"safetensors"``, ``"numpy"``, ``"pickle"``, ``"empty"`` or
    ``"unknown"``."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
        if not head:
            return "empty"
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            try:
                names = zipfile.ZipFile(f).namelist()
            except (zipfile.BadZipFile, OSError, ValueError):
                return "unknown"
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                return "torchscript"
            return "torch-zip"
        if len(head) >= 262 and head[257:262] == b"ustar":
            return "torch-legacy-tar"
        if head.startswith(b"\x93NUMPY"):
            return "numpy"
        if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
            return "safetensors"
        f.seek(0)
        first = _first_pickle_value(f)
    if first is _NOT_A_PICKLE:
        return "unknown"
    return "torch-legacy" if first == _TORCH_MAGIC else "pickle"


_NOT_A_PICKLE = object()


def _first_pickle_value(f) -> Any:
    """The first pickle's value if it is a lone integer (legacy torch magic), None for another pickle, a marker for
    bytes that are no pickle. Reads opcodes only (pickletools), never builds an object."""
    ops = []
    try:
        for op, arg, _ in pickletools.genops(f):
            if op.name == "STOP":
                break
            ops.append((op.name, arg))
    except (ValueError, EOFError, UnicodeDecodeError, struct.error):
        return _NOT_A_PICKLE
    values = [arg for name, arg in ops if name not in ("PROTO", "FRAME")]
    if len(values) == 1 and isinstance(values[0], int) and not isinstance(values[0], bool):
        return values[0]
    return None


# ------------------------------------------------------------------------------------------------- main entry


def load_weights(
    path: str | os.PathLike,
    *,
    map_location: Any = "cpu",
    safe_globals: Iterable[Any] = (),
    stand_ins: Mapping[str, Any] | None = None,
    what: str = "weights file",
) -> Any:
    """Read a weights / checkpoint file without running any pickled code (see the module docstring).

    safe_globals: extra classes torch's weights-only unpickler may rebuild (``torch.serialization.safe_globals``).
    stand_ins: ``{"module.Class": replacement}`` for foreign classes a released file pickles (e.g.
        ``{"yacs.config.CfgNode": MappingStandIn}``); the file is then read through :func:`restricted_pickle_module`.
    what: how error messages name the file (``"checkpoint"``, ``"clip.pretrained"``, ``"--resume"``...).
    Returns whatever the file holds (usually a dict); a TorchScript archive gives its module's state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found; check the path" if not path.exists()
                                else f"{path}: {what} is not a file; give the weights file itself")
    kind = detect_format(path)
    if kind in ("torch-zip", "torch-legacy"):
        return _torch_load(path, map_location, safe_globals, stand_ins, what)
    if kind == "torchscript":
        return read_torchscript_state_dict(path, map_location=map_location, what=what)
    if kind == "safetensors":
        return _safetensors_load(path, map_location, what)
    raise WeightsFileError(path, _REFUSED_KINDS.get(kind, _REFUSED_KINDS["unknown"]).format(what=what))


_REFUSED_KINDS = {
    "pickle": "is a raw pickle, not a torch.save/safetensors {what}; refused without unpickling it (unpickling can "
              "run code): " + _CONVERT_HINT,
    "torch-legacy-tar": "is a pre-2018 torch .tar {what}, which cannot be read without running its pickles; "
                        "re-save it with a current torch (torch.save) or as safetensors",
    "numpy": "is a numpy array file, not a {what}; give the torch.save or safetensors file",
    "empty": "is empty (0 bytes): the {what} was not written completely; re-download or re-save it",
    "unknown": "is not a {what} torch or safetensors can read (unknown format: truncated, or a different file?); "
               "re-download or re-save it",
}


def read_state_dict(path: str | os.PathLike, *, what: str = "weights file", map_location: Any = "cpu",
                    unwrap: tuple[str, ...] = ("state_dict", "model"), strip_prefix: str = "module.") -> dict:
    """A bare state dict from a weights file: unwraps the first of ``unwrap`` keys a dict holds, strips the
    DDP ``module.`` prefix. Errors name the file when it holds no tensor dict."""
    obj = load_weights(path, map_location=map_location, what=what)
    if isinstance(obj, dict):
        for key in unwrap:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {list(obj)[:5]}"
        raise WeightsFileError(path, f"{what} holds a {kind}, not a state dict of tensors; give the model weights file")
    if strip_prefix and all(k.startswith(strip_prefix) for k in obj):
        obj = OrderedDict((k[len(strip_prefix):], v) for k, v in obj.items())
    return obj


def _torch_load(path: Path, map_location, safe_globals, stand_ins, what: str) -> Any:
    extra = list(safe_globals)
    try:  # an open file, not the path: torch.load would treat a "*.safetensors" name as safetensors
        with open(path, "rb") as f, torch.serialization.safe_globals(extra):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not stand_ins:
            raise WeightsFileError(path, _refused_message(str(e), what)) from None
    except Exception as e:  # noqa: BLE001 - truncated/corrupt files surface as many torch error types
        raise WeightsFileError(path, _unreadable_message(e, what)) from e
    # a released file pickles a foreign class: re-read it through the restricted unpickler with its stand-ins
    module = restricted_pickle_module(stand_ins)
    try:
        with open(path, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=False, pickle_module=module)
    except pickle.UnpicklingError as e:
        raise WeightsFileError(path, _refused_message(str(e), what)) from None
    except RuntimeError as e:
        if "explicit pickle_module" not in str(e):  # raised under TORCH_FORCE_WEIGHTS_ONLY_LOAD=1
            raise WeightsFileError(path, _unreadable_message(e, what)) from e
        raise WeightsFileError(path, f"{what} pickles {sorted(stand_ins)}, which only the restricted unpickler "
                                     "reads, and TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 forbids it: unset that variable "
                                     "for this run") from None
    except Exception as e:  # noqa: BLE001
        raise WeightsFileError(path, _unreadable_message(e, what)) from e


def load_bytes(data: bytes, *, what: str = "object") -> Any:
    """What ``torch.save`` wrote into ``data`` (e.g. bytes sent between processes), read weights-only onto the CPU.

    A pickled global a weights-only load refuses raises ``TypeError`` naming it (nothing of it runs)."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise TypeError(f"{what} holds {_refused_global(str(e))}, which a weights-only load refuses; keep to tensors, "
                        "numbers, strings, lists, tuples and dicts") from None


def _refused_global(torch_message: str) -> str:
    m = (re.search(r"GLOBAL ([\w.]+)", torch_message) or re.search(r"global '([^']+)'", torch_message)
         or re.search(r"unrecognized function ([^\n]+)", torch_message))
    return f"the pickled global '{m.group(1)}'" if m else "a pickled object"


def _refused_message(torch_message: str, what: str) -> str:
    found = _refused_global(torch_message)
    return f"{what} holds {found}, which no weights file needs; refused without running it: {_CONVERT_HINT}"


def _unreadable_message(e: Exception, what: str) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return f"cannot read the {what} ({first[:200]}); the file is truncated or corrupt: re-download or re-save it"


def _safetensors_load(path: Path, map_location, what: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsFileError(path, _unreadable_message(e, what)) from e


# ------------------------------------------------------------------------------------------- TorchScript archives


class _ScriptObject:
    """Inert record of a pickled TorchScript object (``__torch__.*``): its class name and attribute dict."""

    qualname = "?"

    def __setstate__(self, state):
        self.state = state


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _script_unpickler(zf: zipfile.ZipFile, prefix: str, byteorder: str):
    classes: dict[str, type] = {}
    storages: dict[str, torch.storage.TypedStorage] = {}

    def identity(value, *_):
        return value

    allowed = {
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "collections.OrderedDict": OrderedDict,
        # typed-container helpers TorchScript's pickler emits; they only return their argument
        **{f"torch.jit._pickle.{n}": identity for n in ("build_intlist", "build_tensorlist", "build_doublelist",
                                                         "build_boollist", "build_tensor_from_id",
                                                         "restore_type_tag")},
    }

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name in _STORAGE_DTYPES:
                return _StorageType(_STORAGE_DTYPES[name])
            if module == "__torch__" or module.startswith("__torch__."):
                qualname = f"{module}.{name}"
                if qualname not in classes:
                    classes[qualname] = type(name, (_ScriptObject,), {"qualname": qualname})
                return classes[qualname]
            if f"{module}.{name}" in allowed:
                return allowed[f"{module}.{name}"]
            raise _refusal(module, name)

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], _StorageType)):
                raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
            _, storage_type, key, _location, numel = pid
            key = str(key)
            if key not in storages:
                raw = zf.read(f"{prefix}data/{key}")
                untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                if byteorder != sys.byteorder:
                    untyped.byteswap(storage_type.dtype)
                storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype,
                                                           _internal=True)
            return storages[key]

    return Unpickler


_CLASS_DECL = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n)*)", re.M)
_NAME_LIST = re.compile(r"^  __(parameters|buffers)__ = \[(.*)\]", re.M)


def _declared_state(zf: zipfile.ZipFile, prefix: str) -> dict[str, list[str]]:
    """{qualname: parameter + buffer names} parsed (as text, never run) from the archive's ``code/`` files."""
    decl = {}
    for name in zf.namelist():
        if not (name.startswith(f"{prefix}code/") and name.endswith(".py")):
            continue
        module = name[len(f"{prefix}code/"):-3].replace("/", ".")
        text = zf.read(name).decode("utf-8", errors="replace")
        for cls, body in _CLASS_DECL.findall(text):
            lists = dict(_NAME_LIST.findall(body))
            names = [n.strip().strip("\"'") for part in ("parameters", "buffers")
                     for n in lists.get(part, "").split(",") if n.strip()]
            decl[f"{module}.{cls}"] = names
    return decl


def read_torchscript_state_dict(path: str | os.PathLike, *, map_location: Any = "cpu",
                                what: str = "TorchScript archive") -> OrderedDict:
    """The state dict of a TorchScript archive (as ``torch.jit.load(path).state_dict()``), without loading it.

    ``data.pkl`` is unpickled with an allow-list (tensor rebuilding, OrderedDict, TorchScript's list helpers);
    ``__torch__`` classes become inert records; tensors are read from the archive's ``data/`` records. Which
    attributes are parameters or buffers comes from the class declarations in ``code/`` (read as text).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            if len(pkl) != 1:
                raise WeightsFileError(path, f"{what}: not a TorchScript archive (no single top-level data.pkl)")
            prefix = pkl[0][: -len("data.pkl")]
            names = set(zf.namelist())
            byteorder = zf.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in names else "little"
            unpickler = _script_unpickler(zf, prefix, byteorder)
            try:
                root = unpickler(io.BytesIO(zf.read(pkl[0])), encoding="utf-8").load()
            except pickle.UnpicklingError as e:
                raise WeightsFileError(path, _refused_message(str(e), what)) from None
            declared = _declared_state(zf, prefix)
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError, RuntimeError, OSError) as e:
        if isinstance(e, WeightsFileError):
            raise
        raise WeightsFileError(path, _unreadable_message(e, what)) from e
    if not isinstance(root, _ScriptObject):
        raise WeightsFileError(path, f"{what}: the archive's data.pkl holds no TorchScript module")
    state = OrderedDict()
    _collect(root, "", declared, state, set())
    if map_location not in (None, "cpu") and not callable(map_location) and not isinstance(map_location, dict):
        state = OrderedDict((k, v.to(map_location)) for k, v in state.items())
    return state


def _collect(obj: _ScriptObject, prefix: str, declared: dict, out: OrderedDict, seen: set) -> None:
    """Parameters and buffers first, then submodules (the order of ``Module.state_dict``)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    attrs = getattr(obj, "state", None)
    if not isinstance(attrs, dict):
        return
    names = declared.get(obj.qualname)
    if names is None:  # class not declared in code/: every tensor attribute is state
        names = [k for k, v in attrs.items() if isinstance(v, torch.Tensor)]
    for name in names:
        if isinstance(attrs.get(name), torch.Tensor):
            out[prefix + name] = attrs[name]
    for name, value in attrs.items():
        if isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", declared, out, seen)
