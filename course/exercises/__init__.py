"""Exercises: you fill in functions in a file of your own; checks grade them.

For each lesson there are three files in this package, all named ``lessonNN.py``:

* ``stubs/``     - the functions to write, each raising NotImplementedError with a hint;
* ``solutions/`` - the reference solutions (read them after trying!);
* ``checks/``    - ``check_<name>(fn)``, which calls your function on known inputs and raises
  AssertionError with a message that says what was expected on which input.

In a lesson::

    from course import exercises
    mine = exercises.workspace("lesson01")             # creates exercises/lesson01.py once, never overwrites
    forward_noise = exercises.pick(mine, "forward_noise")  # yours once it passes its check, else the reference

Grade everything with ``python -m course.grade FOLDER`` (``make grade`` in the repository).
"""
import functools
import importlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Exercise:
    lesson: str  # "lesson01"
    name: str  # the function the learner writes
    points: int
    title: str

    @property
    def check(self):
        return getattr(importlib.import_module(f"{__name__}.checks.{self.lesson}"), f"check_{self.name}")

    @property
    def solution(self):
        return getattr(importlib.import_module(f"{__name__}.solutions.{self.lesson}"), self.name)


# Every exercise of the course, in lesson order.
EXERCISES = [
    Exercise("lesson00", "sample_mixture", 2, "Sample a 2-D Gaussian mixture"),
    Exercise("lesson01", "forward_noise", 1, "The forward process x_t = sqrt(abar) x0 + sqrt(1 - abar) eps"),
    Exercise("lesson01", "eps_loss", 2, "Algorithm 1: the eps-prediction loss"),
    Exercise("lesson01", "ancestral_step", 2, "Algorithm 2: one ancestral sampling step"),
    Exercise("lesson01", "mixture_score", 3, "The exact score of a noisy Gaussian mixture"),
    Exercise("lesson02", "classifier_guidance", 2, "The classifier-guidance step in denoiser form"),
    Exercise("lesson02", "noise_aware_loss", 2, "The loss that makes a classifier noise-aware"),
    Exercise("lesson03", "cfg", 1, "CFG, lerp convention"),
    Exercise("lesson03", "cfg_original", 1, "CFG, the original convention"),
    Exercise("lesson03", "original_to_lerp", 1, "Converting between CFG conventions"),
    Exercise("lesson03", "drop_labels", 2, "Label dropout: one network for D_c and D_u"),
    Exercise("lesson04", "self_attention", 2, "Self-attention and PAG's identity attention"),
    Exercise("lesson04", "pag_cfg", 1, "PAG and CFG as one guider"),
    Exercise("lesson05", "autoguidance", 1, "Autoguidance"),
    Exercise("lesson05", "interval_scale", 2, "A guidance interval: when to guide, and what 'not guiding' is"),
    Exercise("lesson06", "mask_logits", 2, "Random masking of attention logits (PAG ablation)"),
    Exercise("lesson06b", "font_split", 2, "A held-out split by font, to choose w on"),
    Exercise("lesson07", "interval_calls", 2, "What a guidance interval saves: network calls per image"),
    Exercise("lesson08", "apg_project", 2, "APG's parallel / orthogonal split of the guidance update"),
    Exercise("lesson08", "cfg_zero_scale", 1, "CFG-Zero*'s optimised scale s*"),
    Exercise("lesson08", "region_loss", 2, "Steer samples with a loss on the x0 estimate"),
    Exercise("lesson09", "fk_log_weight_increment", 2, "The Feynman-Kac weight of guided sampling"),
    Exercise("lesson09", "effective_sample_size", 1, "The effective sample size of weighted particles"),
]


def lessons():
    """The lesson names that have exercises, in order."""
    return sorted({e.lesson for e in EXERCISES})


def stub_path(lesson: str) -> Path:
    return _HERE / "stubs" / f"{lesson}.py"


def solution_path(lesson: str) -> Path:
    return _HERE / "solutions" / f"{lesson}.py"


def load_file(path, lesson: str):
    """Import a learner's file as a fresh module (re-read on every call, so edits take effect)."""
    path = Path(path)
    name = f"learner_{lesson}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.__lesson__ = lesson
    return module


def workspace(lesson: str, folder="exercises"):
    """Your exercise file for ``lesson`` in ``folder`` (relative to the working directory):
    copied from the stub the first time, never overwritten after that. Returns it as a module."""
    if not stub_path(lesson).exists():
        raise ValueError(f"no exercises for {lesson!r}; lessons with exercises: {lessons()}")
    path = Path(folder) / f"{lesson}.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".py.tmp")
        shutil.copyfile(stub_path(lesson), tmp)
        tmp.replace(path)
        # stderr: the learner sees it once in Jupyter; the book, which hides stderr, does not
        print(f"Created {path}: your copy of the {lesson} exercises. Edit it; it is never overwritten.", file=sys.stderr)
    return load_file(path, lesson)


def exercise(lesson: str, name: str) -> Exercise:
    """The :class:`Exercise` ``lesson.name``, or a ValueError listing the exercises."""
    for e in EXERCISES:
        if (e.lesson, e.name) == (lesson, name):
            return e
    raise ValueError(f"no exercise {lesson}.{name}; exercises: {[f'{e.lesson}.{e.name}' for e in EXERCISES]}")


def pick(mine, name: str):
    """Your ``name`` from module ``mine`` once it is written and passes its check, else the
    reference solution - and a one-line note that says which.

    At the first call, your function is run through the same check as the grader's (in this
    process: it is your own notebook). If it passes, the lesson uses it ("using your function");
    if it is not written yet, or a check fails, the lesson uses the reference solution and the
    note says why, with the check's message (what was expected, on which input). A wrong
    function is never used silently. Re-run the cell that calls :func:`workspace` after editing."""
    lesson = mine.__lesson__
    ex = exercise(lesson, name)
    reference = ex.solution
    yours = getattr(mine, name, None)
    chosen = []

    def decide():
        tag = f"[{lesson}.{name}]"
        if yours is None:
            print(f"{tag} your file defines no function {name}: using the reference solution.")
            return reference
        try:
            ex.check(yours)
        except NotImplementedError:
            print(f"{tag} not written yet: using the reference solution.")
            return reference
        except AssertionError as err:
            print(f"{tag} your function does not pass its check yet: {err}\n"
                  f"{' ' * len(tag)} -> using the reference solution until it does.")
            return reference
        except Exception as err:  # noqa: BLE001 - the learner's code failed inside the check
            print(f"{tag} your function raised {type(err).__name__}: {err}\n"
                  f"{' ' * len(tag)} -> using the reference solution until it works.")
            return reference
        print(f"{tag} using your function (it passes its check).")
        return yours

    @functools.wraps(reference)
    def call(*args, **kwargs):
        if not chosen:
            chosen.append(decide())
        return chosen[0](*args, **kwargs)

    def uses_reference():
        """True while the lesson uses the reference solution (yours is not written, or fails its check)."""
        if not chosen:
            chosen.append(decide())
        return chosen[0] is reference

    call.uses_reference = uses_reference
    return call
