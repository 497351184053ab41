"""Test helper: write pickles in the format of EDM2's released checkpoints, without EDM2's code.

A released .pkl is a pickle of {'ema': Precond, ...} in which every network object is a
"persistent" object: torch_utils.persistence._reconstruct_persistent_obj(meta), where meta holds
the class's source code ('module_src'), its name and its state (nn.Module's __dict__: _parameters,
_buffers, _modules, _init_kwargs, ...); nn.ModuleDict containers are plain pickled objects.
Here a fake ``torch_utils.persistence`` module lets pickle write those references; its function
is never called (our loader must not call the real one either). The embedded source raises if
anyone ever executes it.
"""
import collections
import copyreg
import pickle
import sys
import types

import torch

NEVER_RUN_SOURCE = "raise SystemExit('the embedded module_src was executed: the loader is unsafe')\n"
CLASS_NAMES = {"EDM2Denoiser": "Precond"}


def _reconstruct_persistent_obj(meta):  # noqa: D401 - a stand-in that pickle can name
    raise RuntimeError("the test helper's reconstruct function must never be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


def _install_fake_module():
    pkg = sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
    mod = types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    sys.modules["torch_utils.persistence"] = mod


class Persistent:
    def __init__(self, class_name, state, source=NEVER_RUN_SOURCE):
        self.class_name, self.state, self.source = class_name, state, source

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.source, class_name=self.class_name, state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


class PlainModuleDict:
    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (copyreg._reconstructor, (torch.nn.ModuleDict, object, None), self.state)


def mimic(module, init_kwargs=None, dtype=torch.float16):
    """The object tree EDM2's pickle would hold for ``module`` (parameters stored in fp16)."""
    state = {
        "training": False,
        "_parameters": collections.OrderedDict((n, torch.nn.Parameter(p.detach().to(dtype), requires_grad=False))
                                               for n, p in module._parameters.items()),
        "_buffers": collections.OrderedDict((n, b.detach().clone()) for n, b in module._buffers.items()),
        "_modules": collections.OrderedDict((n, mimic(m)) for n, m in module._modules.items()),
    }
    if isinstance(module, torch.nn.ModuleDict):
        return PlainModuleDict(state)
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(init_kwargs or {})
    return Persistent(CLASS_NAMES.get(type(module).__name__, type(module).__name__), state)


def released_source():
    """A module source the size of the official networks_edm2.py (about 20 kB) that raises if run:
    the first line stops it, the rest (this course's own EDM2 source) is only there for its size."""
    from pathlib import Path

    return NEVER_RUN_SOURCE + (Path(__file__).resolve().parents[1] / "course" / "imagenet" / "edm2.py").read_text()


def mimic_released(module, init_kwargs=None, source=None, dtype=torch.float16):
    """The object tree of an official release file, closer than :func:`mimic`: every persistent
    object carries the same large ``module_src`` string (pickle stores it once and refers to it),
    its state is the module's whole ``__dict__`` (hook dictionaries, the non-persistent-buffer set,
    plain attributes), parameters in fp16, and ModuleDicts go through the default reduction."""
    source = source if source is not None else released_source()
    state = {k: v for k, v in module.__dict__.items() if k not in ("_parameters", "_modules", "perturbation")}
    state["training"] = False
    state["_parameters"] = {n: torch.nn.Parameter(p.detach().to(dtype), requires_grad=False) for n, p in module._parameters.items()}
    state["_buffers"] = {n: b.detach().clone() for n, b in module._buffers.items()}
    state["_modules"] = {n: mimic_released(m, source=source, dtype=dtype) for n, m in module._modules.items()}
    if isinstance(module, torch.nn.ModuleDict):  # a real, empty ModuleDict whose __dict__ is that state
        md = torch.nn.ModuleDict.__new__(torch.nn.ModuleDict)
        object.__setattr__(md, "__dict__", state)
        return md
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(init_kwargs or {})
    return Persistent(CLASS_NAMES.get(type(module).__name__, type(module).__name__), state, source)


def write_edm2_pickle(path, model, init_kwargs, extra=None, released=False):
    """Write {'ema': model, **extra} in EDM2's release format to ``path``. ``released=True``
    writes what an official file holds (:func:`mimic_released`, plus its 'encoder' entry)."""
    _install_fake_module()
    if released:
        source = released_source()
        encoder = Persistent("StandardRGBEncoder", dict(_init_args=(), _init_kwargs={}), source)
        data = {"ema": mimic_released(model, init_kwargs, source), "encoder": encoder, **(extra or {})}
    else:
        data = {"ema": mimic(model, init_kwargs), **(extra or {})}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)


class Payload:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))
