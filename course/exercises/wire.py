"""Plain data between the grader and the process that runs a learner's code.

The grader never unpickles anything the learner's process sends: arguments and results travel
as JSON, with tagged objects for what JSON lacks,

    tensor     {"__tensor__": dtype, "shape": [...], "data": base64 of the raw bytes}
    generator  {"__generator__": base64 of torch.Generator.get_state()}
    tuple      {"__tuple__": [...]}
    callable   {"__callable__": id}      (the other side calls it back through the channel)
    other      {"__object__": type name} (what the learner returned, by name only)

A message is one line of JSON. :func:`decode` builds only tensors of the dtypes below, numbers,
strings, lists, dicts and :class:`Opaque` placeholders; anything else is a :class:`WireError`.
"""
import base64
import json
import math

import numpy as np
import torch

DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
MAX_ELEMENTS = 50_000_000  # a tensor larger than this is refused (a grader check never needs one)


class WireError(ValueError):
    """A message that is not plain data of the expected form."""


class Opaque:
    """Stands for a value of a type that does not travel (only its type name does)."""

    def __repr__(self):
        return f"<{type(self).__name__} object>"


def _opaque(name):
    safe = "".join(ch for ch in str(name) if ch.isalnum() or ch == "_")[:60] or "object"
    return type(safe, (Opaque,), {})()


def encode(value, callables=None):
    """``value`` as JSON-able plain data. ``callables`` (a list) collects functions sent by reference."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            return {"__object__": f"tensor of dtype {t.dtype}"}
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
        return {"__tensor__": _NAMES[t.dtype], "shape": list(t.shape),
                "data": base64.b64encode(raw.numpy().tobytes()).decode("ascii")}
    if isinstance(value, torch.Generator):
        return {"__generator__": base64.b64encode(value.get_state().numpy().tobytes()).decode("ascii")}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, callables) for v in value]}
    if isinstance(value, list):
        return [encode(v, callables) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode(v, callables) for k, v in value.items()}}
    if callable(value) and callables is not None:
        callables.append(value)
        return {"__callable__": len(callables) - 1}
    return {"__object__": type(value).__name__}


def decode(data, make_callable=None):
    """The inverse of :func:`encode`; ``make_callable(id)`` builds the stand-in for a callable."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, make_callable) for v in data]
    if not isinstance(data, dict) or len(data) == 0:
        raise WireError(f"unexpected {type(data).__name__} in a message")
    if "__tensor__" in data:
        dtype = DTYPES.get(data["__tensor__"])
        shape = data.get("shape")
        if dtype is None or not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise WireError("a tensor with an unknown dtype or a bad shape")
        numel = math.prod(shape)
        if numel > MAX_ELEMENTS:
            raise WireError(f"a tensor of {numel} elements (more than {MAX_ELEMENTS})")
        raw = base64.b64decode(data.get("data", ""), validate=True)
        np_dtype = np.int16 if dtype == torch.bfloat16 else torch.empty(0, dtype=dtype).numpy().dtype
        if len(raw) != numel * np.dtype(np_dtype).itemsize:
            raise WireError("a tensor whose data does not match its shape")
        t = torch.from_numpy(np.frombuffer(raw, dtype=np_dtype).copy()).reshape(shape)
        return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t
    if "__generator__" in data:
        state = torch.from_numpy(np.frombuffer(base64.b64decode(data["__generator__"], validate=True), dtype=np.uint8).copy())
        g = torch.Generator()
        try:
            g.set_state(state)
        except RuntimeError as err:
            raise WireError(f"a bad generator state ({err})") from None
        return g
    if "__float__" in data:
        if data["__float__"] not in ("nan", "inf", "-inf"):
            raise WireError("a bad special float")
        return float(data["__float__"])
    if "__tuple__" in data:
        return tuple(decode(v, make_callable) for v in data["__tuple__"])
    if "__dict__" in data:
        return {str(k): decode(v, make_callable) for k, v in data["__dict__"].items()}
    if "__callable__" in data:
        if make_callable is None or not isinstance(data["__callable__"], int):
            raise WireError("a callable where none is expected")
        return make_callable(data["__callable__"])
    if "__object__" in data:
        return _opaque(data["__object__"])
    raise WireError(f"unknown object tags {sorted(data)[:4]}")


def dumps(message) -> bytes:
    """One message as a line of JSON."""
    return (json.dumps(message, allow_nan=False) + "\n").encode("utf-8")


def loads(line: bytes):
    """A message from one line, or a WireError."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"not a JSON line ({err})") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message
