"""The studies' figures: PSNR and SSIM side by side, one line per method.

Drawn on a bare matplotlib `Figure` with an Agg canvas, as `autoenc.plots` does (no pyplot, no
global backend), and saved with its atomic `save_png`.
"""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGURE_INCHES = (10.0, 4.0)
PSNR_AXIS_TOP = 35.0  # dB; higher PSNRs are marked at the top edge
LEGEND_COLUMNS = 4  # the denoising figure's legend, below its panels


def _two_panels(title: str):
    figure = Figure(figsize=FIGURE_INCHES)
    FigureCanvasAgg(figure)
    psnr_axes, ssim_axes = figure.subplots(1, 2)
    figure.suptitle(title)
    for axes, label in ((psnr_axes, "test PSNR (dB)"), (ssim_axes, "test SSIM")):
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    return figure, psnr_axes, ssim_axes


def compression_figure(rows: list[dict]) -> Figure:
    """PSNR and SSIM against the compression ratio 784/dim (log axis), each config vs PCA.

    Args:
        rows: `compression.run`'s rows.
    """
    figure, psnr_axes, ssim_axes = _two_panels(
        "Compression: autoencoders vs PCA, scored on the clean test images"
    )
    ratios = [row["ratio"] for row in rows]
    curves = {name: [row["autoencoders"][name] for row in rows] for name in rows[0]["autoencoders"]}
    curves["PCA (linear)"] = [row["pca"] for row in rows]
    for label, points in curves.items():
        style = "s--" if label == "PCA (linear)" else "o-"
        for axes, metric in ((psnr_axes, "psnr"), (ssim_axes, "ssim")):
            axes.plot(ratios, [point[metric] for point in points], style, label=label)
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
    for axes in (psnr_axes, ssim_axes):
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
    figure, psnr_axes, ssim_axes = _two_panels(
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
