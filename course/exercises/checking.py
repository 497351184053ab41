"""Helpers for the checks: compare a learner's output with the expected one and say how it differs."""
import torch


def fmt(v, digits=4):
    """A short printable form of a tensor, number or list."""
    if isinstance(v, torch.Tensor):
        if v.numel() > 12:
            return f"tensor of shape {list(v.shape)}"
        return str([round(float(a), digits) for a in v.reshape(-1)]) if v.ndim <= 1 else str(
            [[round(float(a), digits) for a in row] for row in v.reshape(v.shape[0], -1)]
        )
    return repr(v)


def expect_tensor(got, expected, call, atol=1e-5, rtol=1e-4):
    """Assert that ``got`` is a finite tensor shaped and valued like ``expected``.
    ``call`` describes the input, e.g. "forward_noise(x0=[[1, 2]], eps=..., abar_t=0.64)"."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{call} should return a torch.Tensor; it returned {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{call} should return shape {list(expected.shape)}; got shape {list(got.shape)}")
    got_d = got.detach().to(torch.float64)
    if not torch.isfinite(got_d).all():
        raise AssertionError(f"{call} returned NaN or inf: {fmt(got_d)}; expected {fmt(expected)}")
    exp_d = expected.detach().to(torch.float64)
    if not torch.allclose(got_d, exp_d, atol=atol, rtol=rtol):
        worst = (got_d - exp_d).abs().max().item()
        raise AssertionError(f"{call}: expected {fmt(exp_d)}, got {fmt(got_d)} (largest difference {worst:.3g})")


def expect(condition, message):
    if not condition:
        raise AssertionError(message)
