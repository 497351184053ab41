"""Small plotting helpers the lessons share (matplotlib). Each draws on an Axes it is given."""
import torch


def grid(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), n=200):
    """A regular grid: (points [n*n, 2] float64, X [n, n], Y [n, n], cell area)."""
    xs = torch.linspace(*xlim, n, dtype=torch.float64)
    ys = torch.linspace(*ylim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    area = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return torch.stack([X.reshape(-1), Y.reshape(-1)], 1), X, Y, area.item()


def density(ax, log_density, xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), n=200, cmap="viridis", title=None):
    """Show exp(log_density(points)) on a grid, normalised to sum to 1 over the grid."""
    pts, X, Y, _ = grid(xlim, ylim, n)
    lp = log_density(pts).reshape(n, n)
    p = torch.softmax(lp.reshape(-1), 0).reshape(n, n)
    ax.pcolormesh(X, Y, p, cmap=cmap, shading="auto")
    ax.set(xlim=xlim, ylim=ylim, aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title)
    return p


def heatmap(ax, values, xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), n=200, cmap="viridis", vmin=None, vmax=None, title=None):
    """Show values(points) [n*n] on a grid as they are (no normalisation); returns the image."""
    pts, X, Y, _ = grid(xlim, ylim, n)
    im = ax.pcolormesh(X, Y, values(pts).reshape(n, n), cmap=cmap, shading="auto", vmin=vmin, vmax=vmax)
    ax.set(xlim=xlim, ylim=ylim, aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title)
    return im


def sample_grid_density(log_density, n, xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), res=400, seed=0):
    """n samples from the density exp(log_density) restricted to a box: pick grid cells by their
    mass, then a uniform point inside the cell. For densities with no sampler of their own."""
    pts, _, _, _ = grid(xlim, ylim, res)
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(torch.softmax(log_density(pts), 0), n, replacement=True, generator=g)
    cell = torch.tensor([(xlim[1] - xlim[0]) / (res - 1), (ylim[1] - ylim[0]) / (res - 1)], dtype=torch.float64)
    return pts[idx] + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * cell


def scatter(ax, x, title=None, color="tab:blue", lim=((-1.5, 1.5), (-1.5, 1.5)), s=1.0):
    ax.scatter(*torch.as_tensor(x).T, s=s, color=color, alpha=0.6, linewidths=0)
    ax.set(xlim=lim[0], ylim=lim[1], aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title)


def quality_variety(ax, curves, quality="log_p", variety="recall", title="Quality versus variety"):
    """One line per guider through its w sweep: ``curves`` maps a name to sweep rows (dicts with
    'w' and the two scores); points are labelled with their w."""
    for name, rows in curves.items():
        xs, ys = [r[variety] for r in rows], [r[quality] for r in rows]
        line, = ax.plot(xs, ys, "o-", label=name)
        for r, x_, y_ in zip(rows, xs, ys):
            ax.annotate(f"{r['w']:g}", (x_, y_), textcoords="offset points", xytext=(3, 3), fontsize=7, color=line.get_color())
    ax.set(xlabel=f"variety: {variety}", ylabel=f"quality: {quality}", title=title)
    ax.legend()


def field(ax, points, vectors, color="k", scale=25, label=None, normaliser=None, max_length=3.0):
    """Arrows at ``points``, each divided by the length of ``normaliser`` there (default: its own),
    so a normaliser arrow has unit length and another field shows its direction and relative size.

    Where the normaliser is nearly zero (the centre of a symmetric density, where the score
    vanishes) that ratio is meaningless and huge: normaliser lengths are floored at 5% of their
    median, and drawn arrows are capped at ``max_length`` units."""
    length = (vectors if normaliser is None else normaliser).norm(dim=1, keepdim=True)
    length = length.clamp(min=max(0.05 * length.median().item(), 1e-12))
    v = vectors / length
    v = v * (max_length / v.norm(dim=1, keepdim=True).clamp(min=max_length))  # cap: |v| <= max_length
    ax.quiver(*points.T, *v.T, color=color, scale=scale, width=0.004, label=label)
