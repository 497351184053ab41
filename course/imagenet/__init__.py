"""The ImageNet-64 rung: our own implementations of the networks the papers used.

* :mod:`.edm2` - EDM2's magnitude-preserving UNet and its EDM preconditioning (Karras et al. 2024).
* :mod:`.adm`  - guided-diffusion's ADM UNet and noise-aware classifier (Dhariwal & Nichol 2021).
* :mod:`.loading` - safe loading of the released checkpoints (no code from a pickle ever runs).

Both expose the course's denoiser interface D(x, sigma, y), so the toy lessons' guiders run on
them unchanged, and both name their attention blocks for PAG.
"""
