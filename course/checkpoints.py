"""Saving and loading our own models as safetensors, written atomically.

A checkpoint holds the state dict plus, in the safetensors metadata, the model's class name and
constructor arguments, so :func:`load` rebuilds the model without running any code from the file
(safetensors holds only tensors and strings). Every failure says what was expected.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import mlp


def _known_classes():
    """The classes a checkpoint may name: a plain dict, extended as the course grows."""
    classes = {"MLPDenoiser": mlp.MLPDenoiser, "EpsMLP": mlp.EpsMLP}
    from . import digits, glyph_models, toy_models

    classes.update(toy_models.CHECKPOINT_CLASSES)
    classes.update(digits.CHECKPOINT_CLASSES)
    classes.update(glyph_models.CHECKPOINT_CLASSES)
    return classes


def atomic_write(path, write):
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it over ``path``:
    readers never see a half-written file, and a crash leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(model, path, **info):
    """Save ``model`` (which has a ``config`` dict of constructor arguments) to ``path``.
    Extra keyword ``info`` (e.g. the command that regenerates it) is stored as metadata."""
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} has no .config; only course models can be saved this way")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"class": type(model).__name__, "config": json.dumps(model.config)}
    meta.update({k: str(v) for k, v in info.items()})
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def read(path):
    """Return (state dict, metadata) of a safetensors file, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found. Committed checkpoints live in data/ (see data/README.md for the "
            "command that regenerates each one); your own are written by course.checkpoints.save."
        )
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it may be truncated or corrupt: "
            "regenerate it or download it again"
        ) from None
    return state, meta


_WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def all_finite(v) -> bool:
    """True if every entry of tensor ``v`` is finite.

    One reduction instead of an elementwise test: NaN and inf propagate through a sum, so a
    finite sum means finite entries. Only a sum of finite values that overflows (easy in fp16,
    where 65504 is the largest number) is not finite; then the elementwise test decides. On a
    124.7M-parameter fp16 network the sum takes a tenth of ``torch.isfinite(v).all()``'s time
    (benchmarks/imagenet.py prints both)."""
    if not v.is_floating_point() or v.numel() == 0:
        return True
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def check_state(state, expected, path="checkpoint"):
    """Compare a state dict with a model's: same keys, same shapes, floating-point weights where
    the model has them (float16, bfloat16, float32 or float64), finite values."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the model: missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. "
            "Was it saved from a different model or configuration?"
        )
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: {k} is a {type(v).__name__}, not a tensor")
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"{path}: {k} has shape {list(v.shape)}, the model expects {list(expected[k].shape)}")
        if expected[k].is_floating_point() and v.dtype not in _WEIGHT_DTYPES:
            raise ValueError(f"{path}: {k} is stored as {v.dtype}; the model's weights are floating point (float16, "
                             "bfloat16, float32 or float64). The file is damaged or was not written for this model.")
        if not all_finite(v):
            raise ValueError(f"{path}: {k} contains NaN or inf; the checkpoint is damaged (or training diverged)")


# Bounds on a configuration, checked before anything is built or looped over: a file may ask for
# a billion blocks or a million resolution levels, and even a shapes-only build would hang on it.
_MAX_REPEATS = 64  # blocks per level, layers, heads (the course's models use at most 8, the released ones 3-4)
_MAX_ENTRIES = 16  # entries of a list such as channel_mult (the released ones have 4)
_MAX_INT = 2**16  # widths, classes, resolutions, timesteps
_REPEAT_KEYS = ("depth", "num_blocks", "num_res_blocks", "heads", "num_heads")
_MAY_BE_MINUS_ONE = ("num_head_channels",)  # guided-diffusion's "not set" value


def check_config(config, path="checkpoint"):
    """Refuse a configuration that no course model has: a count above 64, a negative or huge width,
    a list longer than 16 entries, a NaN - before the model is built (a shapes-only build still
    loops over every block it asks for). Raises ValueError naming the entry."""
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the model configuration is a {type(config).__name__}, expected a mapping")

    def check(key, value, nested=0):
        where = f"{path}: configuration entry {key!r}"
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int):
            top = _MAX_REPEATS if key in _REPEAT_KEYS else _MAX_INT
            low = -1 if key in _MAY_BE_MINUS_ONE else 0
            if not low <= value <= top:
                raise ValueError(f"{where} is {value}; it must lie in {low}..{top} (no course model is built with more). "
                                 "The file is damaged or was not written for this course.")
        elif isinstance(value, float):
            if not (abs(value) <= _MAX_INT):  # False for NaN
                raise ValueError(f"{where} is {value}; expected a finite number of at most {_MAX_INT} in size")
        elif isinstance(value, str):
            if len(value) > 256:
                raise ValueError(f"{where} is a string of {len(value)} characters; expected at most 256")
        elif isinstance(value, (list, tuple)):
            if len(value) > _MAX_ENTRIES or nested > 2:
                raise ValueError(f"{where} has {len(value)} entries (nested {nested} deep); expected at most {_MAX_ENTRIES}, "
                                 "as in channel_mult=(1, 2, 3, 4)")
            for v in value:
                check(key, v, nested + 1)
        else:
            raise ValueError(f"{where} is a {type(value).__name__}; a configuration holds numbers, strings and lists")

    for key, value in config.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: configuration key {key!r} is not a name")
        check(key, value)


def build_checked(cls, config, state, path="checkpoint", assign=False):
    """``cls(**config)``, built only after its parameter shapes are checked against ``state``.

    The config is first bounded (:func:`check_config`), then the model is built on PyTorch's
    "meta" device (shapes, no memory), so a config that asks for a huge network fails on the
    shape check instead of allocating it. With
    ``assign=True`` that meta model is the result: ``state``'s tensors become its parameters
    and buffers as they are (dtype included, no copy), and no random initialisation is paid for;
    buffers the state does not hold (non-persistent ones) are made again on the CPU."""
    check_config(config, path)
    try:
        with torch.device("meta"):
            shell = cls(**config)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, NotImplementedError) as err:  # e.g. a negative width
        raise ValueError(f"{path}: the configuration {config} does not build a {cls.__name__} ({err})") from None
    check_state(state, shell.state_dict(), path)
    if not assign:
        return cls(**config)
    shell.load_state_dict(state, assign=True)
    leftover = [n for n, t in list(shell.named_parameters()) + list(shell.named_buffers()) if t.is_meta]
    if leftover:  # non-persistent buffers: rebuild the model's own values on the CPU
        fresh = dict(cls(**config).named_buffers())
        for name in leftover:
            owner, _, attr = name.rpartition(".")
            shell.get_submodule(owner).register_buffer(attr, fresh[name], persistent=False)
    return shell


def load(path, model=None):
    """Load a checkpoint saved by :func:`save`. Without ``model``, rebuild it from the stored class
    name and config; with one, load into it. Returns the model in eval mode."""
    state, meta = read(path)
    if model is None:
        name = meta.get("class")
        classes = _known_classes()
        if name not in classes:
            raise ValueError(f"{path} names model class {name!r}; known classes: {sorted(classes)}")
        if "config" not in meta:
            raise ValueError(f"{path} has no 'config' in its metadata: it was not written by course.checkpoints.save")
        try:
            config = json.loads(meta["config"])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: its 'config' metadata is not JSON ({err}); the file is damaged") from None
        model = build_checked(classes[name], config, state, path)
    check_state(state, model.state_dict(), path)
    model.load_state_dict(state)
    return model.eval()


def data_folder() -> Path:
    """Where the committed artefacts live: $COURSE_DATA if set, else the repository's data/
    (beside the course/ package of an editable install)."""
    return Path(os.environ.get("COURSE_DATA") or Path(__file__).resolve().parents[1] / "data")


def retrain_main(prog, specs, train_one, argv=None, curve=False):
    """The command line of ``python -m course.toy_models`` / ``course.digits``: train the models
    of ``specs`` (all, or --only NAME ...) with ``train_one(name)`` and save them to FOLDER,
    keeping existing files unless --force. Each file records the command that regenerates it.
    ``curve``: train_one also takes ``curve_path`` (FOLDER/NAME_curve.json) to write a learning curve to."""
    ap = argparse.ArgumentParser(prog=f"python -m {prog}", description="Train and save the committed models.")
    ap.add_argument("folder", help="where to write NAME.safetensors (the repository's data/)")
    ap.add_argument("--only", action="append", choices=sorted(specs), help="train only these (repeatable)")
    ap.add_argument("--force", action="store_true", help="overwrite existing files (otherwise they are kept)")
    args = ap.parse_args(argv)
    import torch

    for name in args.only or specs:
        path = Path(args.folder) / f"{name}.safetensors"
        if path.exists() and not args.force:
            print(f"{path} exists: kept (use --force to retrain and overwrite)")
            continue
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = train_one(name, curve_path=Path(args.folder) / f"{name}_curve.json") if curve else train_one(name)
        seconds = time.perf_counter() - t0
        save(model, path, command=f"python -m {prog} data --only {name} --force", train_seconds=f"{seconds:.1f}")
        print(f"{path}: trained in {seconds:.1f} s")
