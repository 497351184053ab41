"""Lesson 3 reference solutions."""


def cfg(D_u, D_c, w):
    return D_u + w * (D_c - D_u)


def cfg_original(D_u, D_c, w_original):
    return D_c + w_original * (D_c - D_u)


def original_to_lerp(w_original):
    return w_original + 1
