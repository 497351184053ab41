"""The guidance course's package: one idea, a denoiser D(x, sigma, y) -> estimate of x0.

Modules, one concept each (read them next to the lessons):
    settings      fast mode, thread count         conversions  eps / score / x0, VP <-> sigma
    mixtures      exact Gaussian mixtures         presets      ring, fractal tree, fitted moons
    samplers      DDPM, DDIM, EDM Euler / Heun    mlp          tiny MLP denoisers
    training      Algorithm 1, EDM loss, EMA      checkpoints  safetensors, atomic writes
    guiders       CG, CFG, ICG, autoguidance, PAG attention    perturbable self-attention
    metrics       distances between samples       evaluation   scoring guided toy samples
    likelihood    a denoiser's density (ODE)      plots        figure helpers
    toy_models    the toy lessons' models         digits       the 8x8 digits rung
    imagenet/     EDM2, ADM, safe loading, presets  conformance, fid, generate, grade, exercises/
"""
__version__ = "0.1.0"

from .settings import apply_threads as _apply_threads

_apply_threads()  # COURSE_THREADS, if set: the one place that sets torch's thread count
