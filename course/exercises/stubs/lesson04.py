"""Lesson 4 exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson04).
"""
import math

import torch


def self_attention(q, k, v, perturb=False):
    """Scaled dot-product self-attention, and PAG's perturbed version.

    SA(Q, K, V) = softmax(Q K^T / sqrt(d)) V;   PSA(Q, K, V) = I V = V  (perturb=True).
    Args: q, k, v [B, L, d] (batch, tokens, channels); perturb a bool. Returns [B, L, d].
    """
    raise NotImplementedError("hint: q @ k.transpose(-1, -2) gives the [B, L, L] logits; softmax over the last axis")
