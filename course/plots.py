"""Small plotting helpers the lessons share (matplotlib). Each draws on an Axes it is given.

:func:`use_style` sets the one figure style of the course. The book shows a figure at most
``COLUMN_PX`` = 688 pixels wide (its text column at a 1280-pixel window, measured in Chromium),
shrinking wider PNGs to fit. A figure of ``W`` inches saved at ``DPI`` = 100 is about 100 W + 15
pixels wide (the tight bounding box adds a margin), so its smallest text, ``MIN_FONT_PT`` points,
is ``MIN_FONT_PT * DPI / 72 * min(1, COLUMN_PX / (DPI W + 15))`` pixels tall on the page: the
rule "no font below 10 pt, no figure wider than ``MAX_WIDTH_IN`` = 9 inches" keeps every label at
10 pixels or more (``tests/test_book.py`` checks the lessons keep
to it; ``scripts/screenshot_book.py`` measures it on the rendered pages).
"""
import torch

COLUMN_PX, DPI, MIN_FONT_PT, MAX_WIDTH_IN = 688, 100, 10, 9.0

STYLE = {
    "figure.dpi": DPI, "savefig.dpi": "figure",
    "font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "figure.titlesize": 13,
    "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 10, "legend.title_fontsize": 11,
}


def use_style():
    """Apply the course's figure style (:data:`STYLE`) to matplotlib. Lessons call it once."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)


def text_px_at_column(font_pt, width_in, dpi=DPI):
    """How many screen pixels tall ``font_pt`` text is when a ``width_in``-inch figure is shown in
    the book's column (shrunk to COLUMN_PX when wider)."""
    return font_pt * dpi / 72 * min(1.0, COLUMN_PX / (dpi * width_in + 15))


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


def log_density_map(ax, values, xlim, ylim, title, cmap="viridis", span=8.0, support=None):
    """Values on a square grid (values [n*n] over :func:`grid`'s points, e.g. log-densities) as a
    colour map. ``span``: colours clipped to ``span`` nats below the top, so that thin branches of a
    density stay visible. ``span=None``: clipped to the 2nd-98th percentiles over ``support`` ([n*n]
    booleans, e.g. where a model has mass), so that far corners do not set the scale; outside the
    support the map is left blank (grey), since a ratio of two vanishing densities says nothing."""
    n = int(round(values.numel() ** 0.5))
    _, X, Y, _ = grid(xlim, ylim, n)
    v = values.reshape(n, n)
    inside = v.reshape(-1)[support] if support is not None else v.reshape(-1)
    lo, hi = (v.max() - span, v.max()) if span else (torch.quantile(inside, 0.02), torch.quantile(inside, 0.98))
    v = v.clamp(lo, hi)
    if support is not None:
        v = torch.where(support.reshape(n, n), v, torch.nan)
        ax.set_facecolor("0.85")
    ax.pcolormesh(X, Y, v, cmap=cmap, shading="auto")
    ax.set(title=title, xlim=xlim, ylim=ylim, aspect="equal", xlabel="$x_1$", ylabel="$x_2$")


def cell_map(ax, points, values, lim=((-1.5, 1.5), (-1.5, 1.5)), title=None, cmap="viridis", span=None):
    """Values of the cells of a square grid (``points`` [n*n, 2], the cells' centres in the order of
    :class:`course.tilted.TiltedGrid`; ``values`` [n*n] or [n, n], e.g. cell masses or log-masses)
    as a colour map, shown over ``lim``. ``span``: colours clipped to ``span`` below the top (for
    log-values: the nats of a density's tail worth seeing)."""
    n = int(round(points.shape[0] ** 0.5))
    X, Y = points[:, 0].reshape(n, n), points[:, 1].reshape(n, n)
    v = torch.as_tensor(values).reshape(n, n)
    if span is not None:
        v = v.clamp(min=v.max() - span)
    ax.pcolormesh(X, Y, v, cmap=cmap, shading="auto")
    ax.set(xlim=lim[0], ylim=lim[1], aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title)


def image_grid(images, ncol):
    """Images [rows * ncol, 1, H, W] in [-1, 1] (clamped) -> one [rows * H, ncol * W] picture for
    ``ax.imshow`` (with ``cmap="gray_r", vmin=-1, vmax=1``: ink dark)."""
    h, w = images.shape[-2:]
    imgs = torch.as_tensor(images).clamp(-1, 1).reshape(-1, ncol, h, w)
    return imgs.permute(0, 2, 1, 3).reshape(imgs.shape[0] * h, ncol * w)


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


def label_points(ax, points, min_gap_px=16):
    """Write each label beside its point, skipping a label that would land within ``min_gap_px``
    of one already written (so crowded sweeps stay legible; the skipped points keep their marker).
    ``points``: a list of (x, y, text, color) in data coordinates, most important first."""
    ax.autoscale_view()
    placed = []
    for x, y, text, color in points:
        px, py = ax.transData.transform((x, y))
        if all((px - qx) ** 2 + (py - qy) ** 2 >= min_gap_px**2 for qx, qy in placed):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=MIN_FONT_PT, color=color)
            placed.append((px, py))


def quality_variety(ax, curves, quality="log_p", variety="recall", title="Quality versus variety"):
    """One line per guider through its w sweep: ``curves`` maps a name to sweep rows (dicts with
    'w' and the two scores); points are labelled with their w where there is room (each curve's
    first and last point first)."""
    labels = []
    for name, rows in curves.items():
        xs, ys = [r[variety] for r in rows], [r[quality] for r in rows]
        line, = ax.plot(xs, ys, "o-", label=name)
        order = [0, len(rows) - 1] + list(range(1, len(rows) - 1)) if len(rows) > 1 else [0]
        labels += [(xs[i], ys[i], f"w={rows[i]['w']:g}" if i == 0 else f"{rows[i]['w']:g}", line.get_color()) for i in order]
    ends = [p for p in labels if p[2].startswith("w=")]
    label_points(ax, ends + [p for p in labels if not p[2].startswith("w=")])
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
