"""Loading the released ImageNet-64 checkpoints safely.

* ADM (guided-diffusion) ``.pt`` files are plain state dicts: ``torch.load(weights_only=True)``,
  which refuses anything but tensors and containers.
* EDM2 ``.pkl`` files are pickles that embed the authors' source code and, unpickled normally,
  import and run it. :func:`load_edm2_pickle` uses a restricted unpickler instead: it resolves
  only an allow-list of names (tensor rebuilding, ordered dicts), turns the authors' own objects
  into inert records, never executes the embedded source, and refuses everything else (``os``,
  ``subprocess``, ``builtins.eval``, ...) with an error that names what the file asked for.
  From the records it extracts the EMA network's constructor arguments and state dict and loads
  them into our :class:`~course.imagenet.edm2.EDM2Denoiser`.

Every failure - a missing, truncated, foreign or mismatched file, a NaN weight - raises an error
that says what was expected.
"""
import collections
import io
import pickle
from pathlib import Path

import torch

from ..checkpoints import build_checked
from .adm import ADMClassifier, ADMUNet
from .edm2 import EDM2Denoiser

# The released 64x64 ADM models (guided-diffusion's README, https://github.com/openai/guided-diffusion),
# as constructor arguments.
ADM64_UNET = dict(image_size=64, model_channels=192, num_res_blocks=3, num_head_channels=64, attention_resolutions="32,16,8",
                  channel_mult=(1, 2, 3, 4), num_classes=1000, learn_sigma=True, out_channels=6, use_new_attention_order=True)
ADM64_CLASSIFIER = dict(image_size=64, model_channels=128, num_res_blocks=4, num_head_channels=64, attention_resolutions="32,16,8",
                        channel_mult=(1, 2, 3, 4), out_channels=1000)


class RefusedPickle(pickle.UnpicklingError):
    """The file asked the unpickler for something outside the allow-list."""


def _need_file(path, what):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found. Download it (README, 'ImageNet-64 checkpoints') and pass its path, "
                                "or set COURSE_CHECKPOINTS to the folder that holds it.")
    return path


# --- ADM ------------------------------------------------------------------------------------------------
def load_state_dict_pt(path, what="checkpoint"):
    """A plain state dict from a .pt file, with torch.load(weights_only=True)."""
    path = _need_file(path, what)
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip format, or a legacy pickle
        raise ValueError(f"{path} could not be read: it is not a PyTorch checkpoint (it starts with {head!r}); "
                         "it may be truncated or corrupt: download it again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line or "Unsupported" in line),
                      str(err).splitlines()[0] if str(err) else "")
        raise ValueError(f"{path} holds more than tensors and was refused by weights_only loading ({reason}). "
                         "The released ADM files are plain state dicts; this is not one of them.") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} could not be read ({type(err).__name__}: {err}); it may be truncated or corrupt: download it again") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of names to tensors)")
    return state


def _load_into(cls, config, path, what):
    """cls(**config) with the weights of a guided-diffusion .pt, in float32 (the released weights
    are fp16; guided-diffusion loads them into a float32 model and, with --use_fp16, converts the
    torso back: :meth:`~course.imagenet.adm.ADMUNet.convert_to_fp16`)."""
    state = load_state_dict_pt(path, what)  # checked as stored (dtypes, shapes, finite), then converted once
    return build_checked(cls, config, state, path, assign=True).float().eval()


def load_adm_unet(path, **config):
    """ADMUNet from a guided-diffusion .pt (default config: the released 64x64 model)."""
    return _load_into(ADMUNet, {**ADM64_UNET, **config}, path, "ADM UNet checkpoint")


def load_adm_classifier(path, **config):
    """ADMClassifier from a guided-diffusion .pt (default config: the released 64x64 classifier)."""
    return _load_into(ADMClassifier, {**ADM64_CLASSIFIER, **config}, path, "ADM classifier checkpoint")


# --- EDM2 ------------------------------------------------------------------------------------------------
class Record:
    """An inert stand-in for one of the authors' objects: it stores what the pickle says about
    it and runs nothing (no source is compiled, no method of theirs is called)."""

    class_name, meta = None, None  # defaults for records made without __init__ (copyreg._reconstructor)

    def __init__(self, *args, **kwargs):
        self.class_name, self.meta, self.state = None, None, {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"_state": state}

    @property
    def fields(self):
        return self.__dict__.get("state") or {}


class RecordDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict."""

    def __setstate__(self, state):
        pass


def _persistent(meta):
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: keep the metadata; the
    embedded ``module_src`` stays a string and is never compiled."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise RefusedPickle("a persistent object without the expected metadata (type 'class')")
    rec = Record()
    rec.class_name = meta.get("class_name")
    rec.meta = {k: v for k, v in meta.items() if k != "state"}
    rec.state = meta.get("state") or {}
    return rec


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    if not isinstance(data, torch.Tensor):
        raise RefusedPickle("a parameter whose data is not a tensor")
    return torch.nn.Parameter(data, requires_grad=False)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise RefusedPickle("a tensor whose storage is not a storage")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


# torch's legacy single-storage format, which pickled tensors carry as bytes (what
# torch.storage._load_from_bytes reads): five small pickles - magic number, protocol version,
# system info, a persistent id ('storage', <torch.XStorage>, key, location, numel, view), the
# list of keys - then, per key, the element count (int64) and the raw little-endian data.
_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
_STORAGE_DTYPES = {"HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16, "FloatStorage": torch.float32,
                   "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool}


class _StorageHeader(pickle.Unpickler):
    """Reads the header pickles of one legacy storage: plain data, storage type names, and one
    persistent id; anything else is refused."""

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise RefusedPickle(f"refused: a tensor storage that asks to load {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)
                and isinstance(pid[4], int) and pid[4] >= 0 and (len(pid) < 6 or pid[5] is None)):
            raise RefusedPickle("refused: a tensor storage with an unexpected record")
        return pid


def _storage_from_bytes(data):
    """torch.storage._load_from_bytes, read directly: the header pickles with a restricted
    unpickler, the data as one copy of the bytes (about twice as fast as torch.load with
    weights_only on a released EDM2 file; benchmarks/imagenet.py)."""
    if not isinstance(data, (bytes, bytearray)):
        raise RefusedPickle("a storage that is not bytes")
    f = io.BytesIO(data)
    magic, protocol, info = (_StorageHeader(f).load() for _ in range(3))
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(info, dict):
        raise ValueError("a tensor storage in an unknown format (not torch's legacy serialization)")
    if info.get("little_endian") is not True:
        raise ValueError("a tensor storage written on a big-endian machine; this loader reads little-endian files only")
    _, dtype, key, _location, numel, *_ = _StorageHeader(f).load()
    if _StorageHeader(f).load() != [key]:
        raise ValueError("a tensor storage record that holds more or other storages than one")
    count = int.from_bytes(f.read(8), "little", signed=True)
    start, nbytes = f.tell(), numel * torch.empty((), dtype=dtype).element_size()
    if count != numel or start + nbytes != len(data):
        raise ValueError(f"a tensor storage of {len(data)} bytes that declares {numel} elements of {dtype}: truncated or corrupt")
    flat = torch.frombuffer(bytearray(memoryview(data)[start:]), dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
    return torch.storage.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=dtype, _internal=True)


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor, only for our inert record classes."""
    if cls not in (Record, RecordDict) or base is not object:
        raise RefusedPickle(f"object reconstruction of {cls!r}")
    return cls.__new__(cls)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): object,
    ("dnnlib.util", "EasyDict"): RecordDict,
    ("torch.nn.modules.container", "ModuleDict"): Record,
    ("torch.nn.modules.container", "ModuleList"): Record,
    ("torch.nn.modules.container", "Sequential"): Record,
}
# The authors' own packages: their classes become inert records (nothing of theirs is imported).
_AUTHORS_PACKAGES = ("training.", "torch_utils.", "dnnlib.")


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.startswith(_AUTHORS_PACKAGES) and name[:1].isupper():
            return Record
        raise RefusedPickle(
            f"refused: the file asks to load {module}.{name}, which is not part of an EDM2 checkpoint. "
            "A pickle can run arbitrary code when loaded; this loader accepts only the EDM2 format. "
            "If the file should be a checkpoint, it is not one this course can read safely."
        )

    def persistent_load(self, pid):
        raise RefusedPickle("refused: persistent ids (torch.save's zip format is not an EDM2 .pkl; use torch.load(weights_only=True))")


_MAX_DEPTH = 64  # EDM2's module tree is about 6 deep; deeper (or cyclic) trees are not checkpoints


def _collect(module, prefix, out, path=()):
    """Flatten a record tree's _parameters, _buffers and _modules into a state dict. Refuses
    cycles, absurd depth, and entries that are not tensors."""
    if any(module is seen for seen in path):
        raise ValueError(f"the module tree has a cycle at {prefix.rstrip('.') or 'the root'}; not an EDM2 checkpoint")
    if len(path) > _MAX_DEPTH:
        raise ValueError(f"the module tree is deeper than {_MAX_DEPTH} levels at {prefix}; not an EDM2 checkpoint")
    state = module.fields if isinstance(module, Record) else {}
    for key in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state.get(key) or {}, dict):
            raise ValueError(f"{prefix or 'the network'}: {key} is a {type(state.get(key)).__name__}, expected a mapping")
    for key in ("_parameters", "_buffers"):
        for name, value in (state.get(key) or {}).items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{prefix}{name} is a {type(value).__name__}, not a tensor; not an EDM2 checkpoint")
            out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out, path + (module,))
    return out


def read_edm2_pickle(path, key="ema"):
    """(constructor kwargs, state dict) of the network stored under ``key`` in an EDM2 .pkl,
    read with the restricted unpickler."""
    path = _need_file(path, "EDM2 checkpoint")
    try:
        with open(path, "rb") as f:
            data = SafeUnpickler(f).load()
    except RefusedPickle:
        raise
    except (MemoryError, OverflowError) as err:  # e.g. a BINBYTES8 opcode claiming 2^40 bytes
        raise ValueError(f"{path} declares an object larger than memory ({type(err).__name__}); "
                         f"the file is {path.stat().st_size} bytes: it is corrupt or not an EDM2 checkpoint") from None
    except RecursionError:
        raise ValueError(f"{path} nests objects too deeply to be an EDM2 checkpoint") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} could not be read as an EDM2 checkpoint ({type(err).__name__}: {err}); "
                         "it may be truncated or corrupt: download it again") from None
    if not isinstance(data, dict) or key not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} has no {key!r} network; an EDM2 checkpoint is a dict with 'ema'; this one has {have}")
    net = data[key]
    if not isinstance(net, Record) or net.class_name != "Precond":
        found = net.class_name if isinstance(net, Record) and net.class_name else type(net).__name__
        raise ValueError(f"{path}: {key!r} is not an EDM2 Precond network (found {found})")
    kwargs = net.fields.get("_init_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{path}: the constructor arguments are a {type(kwargs).__name__}, expected a mapping of names")
    if net.fields.get("_init_args"):
        raise ValueError(f"{path}: positional constructor arguments are not supported; expected keyword arguments only")
    try:
        state = _collect(net, "", collections.OrderedDict())
    except RecursionError:
        raise ValueError(f"{path}: the module tree is too deep to be an EDM2 checkpoint") from None
    return dict(kwargs), state


def load_edm2_pickle(path, key="ema", dtype=None, **overrides):
    """Our EDM2Denoiser with the weights and configuration of an official EDM2 .pkl (safely).

    The model is built on the meta device and the file's tensors become its weights as they are
    (no random initialisation, no copy): ``dtype=None`` keeps the stored precision (fp16 in the
    released files), exactly what ``pickle.load`` of the official code gives; every layer casts its
    weight to float32 before using it (MPConv), so the network computes the same numbers either
    way. ``dtype=torch.float32`` converts once at load (twice the memory, no cast per call)."""
    kwargs, state = read_edm2_pickle(path, key)
    kwargs = {**kwargs, **overrides}
    if dtype is not None:
        state = collections.OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items())
    return build_checked(EDM2Denoiser, kwargs, state, path, assign=True).eval()


def load_edm2_safetensors(weights_path, constructor):
    """EDM2Denoiser from a safetensors state dict with official key names and a constructor dict
    (the conformance format), in float32."""
    from safetensors.torch import load_file

    state = load_file(str(_need_file(weights_path, "EDM2 weights")))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return build_checked(EDM2Denoiser, constructor, state, weights_path, assign=True).eval()
