"""The demo's figure (matplotlib, Agg backend: no display needed).

Rows, for the experiments that were run:

* moons: the cost curves of every optimizer (raw per mini-batch, light; smoothed with the
  bias-corrected ``fastopt.ewa``, dark) and the learning rate of every epoch of the decayed runs;
  then one decision-boundary panel per optimizer;
* digits: the cost curves (log scale) and the train/test accuracy of every optimizer;
* bf16: the cost curves (log scale) of Adam in float32 and in the four bfloat16 storage schemes
  on one panel, and the fraction of parameter elements a step left unchanged in each run.
"""

import numpy as np

from . import nn
from .experiments import moons_data

__all__ = ["plot_results"]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
_STYLES = ["-", "--"]       # alternate, so that a curve hidden under the next stays visible
_RAW_POINTS = 4000          # raw curves are thinned to about this many points (they are noise)


def _thin(x, y, n=_RAW_POINTS):
    k = max(1, len(y) // n)
    return x[::k], y[::k]


def _cost_curves(ax, results, title, log=False):
    lows, highs = [], []
    for i, (color, (name, r)) in enumerate(zip(_COLORS, results.items())):
        steps = np.arange(1, r["costs"].size + 1)
        epochs = steps / r["steps_per_epoch"]
        # batch-1 costs spread over orders of magnitude: draw them fainter
        ax.plot(*_thin(epochs, r["costs"]), color=color, linewidth=0.6,
                alpha=0.18 if r["batch_size"] > 1 else 0.07)
        ax.plot(epochs, r["smoothed"], color=color, linewidth=1.8, linestyle=_STYLES[i % 2],
                label=f"{name}: cost {r['final_cost']:.3f}")
        lows.append(r["smoothed"].min())
        highs.append(r["smoothed"][: max(1, r["smoothed"].size // 50)].max())
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost (cross-entropy)")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(0.5 * min(lows), 1.5 * max(highs))
    else:
        ax.set_ylim(0.0, 1.15 * max(highs))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def _lr_curves(ax, results):
    for color, (name, r) in zip(_COLORS, results.items()):
        decayed = np.ptp(r["lr_curve"]) > 0
        if decayed or name == "Adam":
            epochs = np.arange(r["lr_curve"].size)
            ax.step(epochs, r["lr_curve"], where="post", color=color,
                    linewidth=1.8 if decayed else 1.0, linestyle="-" if decayed else "--",
                    label=f"{name}: {r['lr']}")
    ax.set_title("moons: learning rate per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def _decision_boundary(ax, params, X, Y, title):
    pad = 0.5
    x0 = np.linspace(X[0].min() - pad, X[0].max() + pad, 250)
    x1 = np.linspace(X[1].min() - pad, X[1].max() + pad, 250)
    g0, g1 = np.meshgrid(x0, x1)
    grid = np.vstack([g0.ravel(), g1.ravel()])
    prob, _ = nn.forward(params, grid)
    ax.contourf(g0, g1, prob.reshape(g0.shape), levels=[0.0, 0.5, 1.0],
                colors=["#c6dbef", "#fdd0a2"], alpha=0.9)
    ax.contour(g0, g1, prob.reshape(g0.shape), levels=[0.5], colors="k", linewidths=0.8)
    labels = Y[0].astype(bool)
    ax.scatter(X[0, ~labels], X[1, ~labels], s=9, c="#08519c", edgecolors="none")
    ax.scatter(X[0, labels], X[1, labels], s=9, c="#d94801", edgecolors="none")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _accuracy_bars(ax, results):
    names = list(results)
    x = np.arange(len(names))
    train = [100 * results[n]["train_acc"] for n in names]
    test = [100 * results[n]["test_acc"] for n in names]
    ax.bar(x - 0.2, train, width=0.4, label="train", color="#9ecae1")
    bars = ax.bar(x + 0.2, test, width=0.4, label="test", color="#3182bd")
    for b, t in zip(bars, test):
        ax.text(b.get_x() + b.get_width() / 2, t + 0.3, f"{t:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(max(0.0, min(train + test) - 10), 101)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("digits: accuracy after training")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _unchanged_bars(ax, results):
    names = list(results)
    x = np.arange(len(names))
    pct = [100 * results[n]["unchanged"] for n in names]
    bars = ax.bar(x, pct, width=0.6, color=_COLORS[:len(names)])
    for b, p, n in zip(bars, pct, names):
        ax.text(b.get_x() + b.get_width() / 2, p + 1, f"{p:.1f}%\n"
                f"{1e6 * results[n]['median_step_s']:.0f} us/step", ha="center", fontsize=7)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, min(100, max(pct) + 15) if pct else 100)
    ax.set_ylabel("elements unchanged per step (%)")
    ax.set_title("bf16: parameter elements a step left unchanged (mean over steps), and the "
                 "median step time", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)


def plot_results(results, path):
    """Write the figure for ``{"moons": results, "digits": results, "bf16": results}`` (any may
    be absent) to `path` as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    moons, digits, bf16 = results.get("moons"), results.get("digits"), results.get("bf16")
    n_moons = len(moons) if moons else 0
    rows = (2 if moons else 0) + (1 if digits else 0) + (1 if bf16 else 0)
    cols = max(n_moons, 5)
    heights = ([1.3, 1.0] if moons else []) + ([1.3] if digits else []) + ([1.3] if bf16 else [])
    fig = plt.figure(figsize=(3.4 * cols, 4.2 * sum(heights)))
    gs = GridSpec(rows, 2 * cols, figure=fig, height_ratios=heights)
    split = (2 * cols * 3) // 5
    row = 0
    if moons:
        first = next(iter(moons.values()))
        _cost_curves(fig.add_subplot(gs[row, :split]), moons,
                     f"moons: cost per mini-batch (light) and smoothed (bias-corrected EWA), "
                     f"{first['epochs']} epochs, batch {first['batch_size']}")
        _lr_curves(fig.add_subplot(gs[row, split:]), moons)
        (X, Y), _ = moons_data()
        for i, (name, r) in enumerate(moons.items()):
            ax = fig.add_subplot(gs[row + 1, 2 * i:2 * i + 2])
            _decision_boundary(ax, r["params"], X, Y,
                               f"{name}\ntrain {100 * r['train_acc']:.1f}%, "
                               f"test {100 * r['test_acc']:.1f}%")
        row += 2
    if digits:
        first = next(iter(digits.values()))
        _cost_curves(fig.add_subplot(gs[row, :split]), digits,
                     f"digits: cost per mini-batch (light) and smoothed (bias-corrected EWA), "
                     f"{first['epochs']} epochs", log=True)
        _accuracy_bars(fig.add_subplot(gs[row, split:]), digits)
        row += 1
    if bf16:
        first = next(iter(bf16.values()))
        _cost_curves(fig.add_subplot(gs[row, :split]), bf16,
                     f"bf16: digits with Adam (lr {first['lr']}), float32 vs bfloat16 storage, "
                     f"cost per mini-batch (light) and smoothed, {first['epochs']} epochs",
                     log=True)
        _unchanged_bars(fig.add_subplot(gs[row, split:]), bf16)
    fig.suptitle("fastopt demo: the optimizers of the course, on fastopt's kernels",
                 fontsize=14)
    # keep 0.4 inch above the panels for the title, whatever the figure's height
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / fig.get_figheight()))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
