"""The studies' figures: PSNR and SSIM side by side, one line per method, and for the
compression study the probe's accuracy on each code beside them.

Drawn on a bare matplotlib `Figure` with an Agg canvas, as `autoenc.plots` does (no pyplot, no
global backend), and saved with its atomic `save_png`.
"""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGURE_INCHES = (10.0, 4.0)  # two panels; each further panel adds half the width
PSNR_AXIS_TOP = 35.0  # dB; higher PSNRs are marked at the top edge
LEGEND_COLUMNS = 4  # the denoising figure's legend, below its panels


def _panels(title: str, labels=("test PSNR (dB)", "test SSIM")):
    """A figure of one panel per y-axis label, side by side, and its axes."""
    width = FIGURE_INCHES[0] * len(labels) / 2
    figure = Figure(figsize=(width, FIGURE_INCHES[1]))
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, len(labels))
    figure.suptitle(title)
    for axes, label in zip(panels, labels):
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    return figure, *panels


def compression_figure(rows: list[dict]) -> Figure:
    """PSNR, SSIM and the probe's k-NN accuracy against the compression ratio 784/dim (log
    axis), each config vs PCA; the accuracy on the raw pixels is a dotted line.

    Args:
        rows: `compression.run`'s rows.
    """
    figure, psnr_axes, ssim_axes, probe_axes = _panels(
        "Compression: autoencoders vs PCA, scored on the clean test images",
        ("test PSNR (dB)", "test SSIM", "test k-NN accuracy of the code"),
    )
    ratios = [row["ratio"] for row in rows]
    curves = {name: [row["autoencoders"][name] for row in rows] for name in rows[0]["autoencoders"]}
    curves["PCA (linear)"] = [row["pca"] for row in rows]
    metrics = ((psnr_axes, "psnr"), (ssim_axes, "ssim"), (probe_axes, "probe"))
    for label, points in curves.items():
        style = "s--" if label == "PCA (linear)" else "o-"
        for axes, metric in metrics:
            axes.plot(ratios, [point[metric] for point in points], style, label=label)
    probe_axes.axhline(rows[0]["pixels_probe"], color="k", linestyle=":", label="raw pixels")
    # PCA with almost every component is near-exact (tens of dB); keep the rest readable.
    off_scale = [row for row in rows if row["pca"]["psnr"] > PSNR_AXIS_TOP]
    if off_scale:
        psnr_axes.set_ylim(top=PSNR_AXIS_TOP)
        for row in off_scale:
            psnr_axes.annotate(
                f"PCA {row['pca']['psnr']:.0f} dB\n(off scale)",
                xy=(row["ratio"], PSNR_AXIS_TOP),
                xytext=(row["ratio"] * 1.15, PSNR_AXIS_TOP - 6),
                arrowprops=dict(arrowstyle="->"),
                fontsize=8,
            )
    for axes in (psnr_axes, ssim_axes, probe_axes):
        axes.set_xscale("log")
        axes.set_xticks(ratios, [f"{r:.3g}\n({row['dim']})" for r, row in zip(ratios, rows)])
        axes.minorticks_off()
        axes.set_xlabel("compression 784/dim (code dim)")
        axes.legend()
    figure.tight_layout()
    return figure


def denoising_figure(levels: list[float], curves: dict[str, list[dict]], learned=()) -> Figure:
    """PSNR and SSIM against the noise factor, one line per method.

    Args:
        levels: the noise factors.
        curves: {method label: one {psnr, ssim, ...} point per level}.
        learned: the labels of the learned denoisers, drawn with markers to stand out.
    """
    figure, psnr_axes, ssim_axes = _panels(
        "Denoising: clip(x + f·N(0,1), 0, 1), scored against the clean test images"
    )
    for label, points in curves.items():
        style = "k:" if label == "noisy input" else ("o-" if label in learned else ".-")
        for axes, metric in ((psnr_axes, "psnr"), (ssim_axes, "ssim")):
            axes.plot(levels, [point[metric] for point in points], style, label=label)
    for axes in (psnr_axes, ssim_axes):
        axes.set_xlabel("noise factor f")
    # Below both panels: inside one, the legend hid the lines of the best denoisers.
    handles, labels = psnr_axes.get_legend_handles_labels()
    rows = -(-len(labels) // LEGEND_COLUMNS)
    figure.set_size_inches(FIGURE_INCHES[0], FIGURE_INCHES[1] + 0.25 * rows)
    figure.legend(handles, labels, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=8)
    figure.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    return figure
