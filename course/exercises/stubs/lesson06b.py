"""Lesson 6b exercises - yours to edit. Replace each `raise NotImplementedError(...)` with your code.

Grade with `make grade` from the repository root (or: python -m course.grade notebooks/exercises --lesson lesson06b).
"""
import torch


# Hints, in tiers: read the first (the idea) before the second (the shape of the computation).
HINTS = {
    'font_split': (
        'The unit of the split is the font, not the image: every image of a family shares its style, '
        'so a family with images on both sides would let the validation score peek at the report '
        'fonts. Decide per family, at random, then carry the decision to every image of it.',
        'Collect the distinct family names in a fixed order (a set has none), shuffle that list with a '
        'generator seeded by seed, call the first half (rounded down) validation, and build the '
        'boolean answer by asking, for each image, whether its family is among them.',
    ),
}


def font_split(fonts, seed=0):
    """Split images into a validation part and a report part by font family.

    Args: fonts - a list of N family names, one per image (the same name appears many times);
    seed - an int: the same seed must give the same split, another seed another one.
    Returns a bool tensor [N]: True for the images of the validation families, False for the report
    families. Half the distinct families (rounded down) are validation families, drawn at random;
    every image of a family is on the same side.
    """
    raise NotImplementedError("not written yet; stuck? HINTS['font_split'] at the top of this file")
