"""Report figures as reproducible SVG data URIs (matplotlib, no pyplot, no timestamps).

Text in the SVGs stays text (svg.fonttype "none", DejaVu Sans, an installed font WeasyPrint
embeds), and identical data give identical bytes (svg.hashsalt fixed, metadata Date None).
"""

from __future__ import annotations

import base64
import functools
import io

import matplotlib
import matplotlib.colors
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from saferisk.audit.summary import GroupSummary
from saferisk.audit.verdict import norm_name, unit_text

RC = {
    "svg.hashsalt": "saferisk-report",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
COLORS = {"radius_lower": "#1b7837", "radius_estimate": "#e08214", "radius_upper": "#b2182b"}
LABELS = {"radius_lower": "certified lower bound", "radius_estimate": "estimate (paper)",
          "radius_upper": "witness upper bound"}
MODEL_COLORS = ("#1f4e79", "#b2182b", "#1b7837", "#e08214", "#762a83", "#4d4d4d", "#2166ac", "#8c510a")
MAX_BRACKET_INPUTS = 1000
# fractions span [0, 1]: a margin above 1 keeps a curve at exactly 1.0 visible above the frame
FRACTION_YLIM = (-0.04, 1.08)


def _with_style(make_figure):
    """Run a figure function under the report's rcParams without changing global state."""
    @functools.wraps(make_figure)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return make_figure(*args, **kwargs)
    return wrapper


def svg_data_uri(fig: Figure) -> str:
    """data:image/svg+xml URI of the figure (explicit size, tight bbox, no date)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _radius_label(group: GroupSummary) -> str:
    return f"radius r ({norm_name(group.norm)} norm)\n{unit_text(group.scale)}"


def _radius_axis(ax, top: float | None) -> None:
    """x from r = 0 to the maximum radius searched (a little beyond, so a step there shows)."""
    ax.set_xlim(0, (top or 1.0) * 1.02)
    ax.set_ylim(*FRACTION_YLIM)
    if top:  # ticks at 0, top/3, 2 top/3 and the maximum radius itself
        ax.set_xticks([top * k / 3 for k in range(4)])
        ax.set_xticklabels([f"{top * k / 3:.3g}" for k in range(4)])


@_with_style
def property_figure(rows: pd.DataFrame, group: GroupSummary) -> str | None:
    """Three panels for one (model, property, norm): radius distributions, fraction of inputs
    safe vs radius (certified / estimate / upper bound from witnesses), and each input's
    bracket with its estimate. None when no input has any radius."""
    assessed = rows.loc[rows["status"].isin(["ok", "violated_at_input"])]
    if not len(assessed) or not any(assessed[k].notna().any() for k in LABELS):
        return None
    fig = Figure(figsize=(7.2, 2.35))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25], "wspace": 0.45})
    _distribution_panel(axes[0], assessed, group)
    _fraction_panel(axes[1], group)
    _bracket_panel(axes[2], assessed, group)
    return svg_data_uri(fig)


def _distribution_panel(ax, rows: pd.DataFrame, group: GroupSummary) -> None:
    top = group.max_radius or max(float(rows[k].max()) for k in LABELS if rows[k].notna().any())
    bins = np.linspace(0.0, top if top > 0 else 1.0, 21)
    for kind in LABELS:
        values = rows[kind].dropna().to_numpy(dtype=float)
        if values.size:
            ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, histtype="step", linewidth=1.3,
                    color=COLORS[kind], label=f"{LABELS[kind]} (n={values.size})")
    ax.set_title("radius distribution")
    ax.set_xlabel(_radius_label(group))
    ax.set_ylabel("inputs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), frameon=False)


def _fraction_panel(ax, group: GroupSummary) -> None:
    radii = np.asarray(group.radii, dtype=float)
    if radii.size:
        ax.step(radii, group.estimate_fraction, where="post", color=COLORS["radius_estimate"],
                linestyle="--", label="estimated safe (not a guarantee)")
        ax.step(radii, group.certified_fraction, where="post", color=COLORS["radius_lower"],
                label="certified safe (sound)")
        # drawn last, dotted and thick: visible where it coincides with another curve
        ax.step(radii, 1 - np.asarray(group.risk_fraction), where="post", color=COLORS["radius_upper"],
                linestyle=":", linewidth=2.0, label="no witness found (upper bound)", zorder=3)
    _radius_axis(ax, group.max_radius or (float(radii.max()) if radii.size else None))
    ax.set_title("fraction of inputs safe at radius r")
    ax.set_xlabel(_radius_label(group))
    ax.set_ylabel("fraction of inputs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), frameon=False)


def _bracket_panel(ax, rows: pd.DataFrame, group: GroupSummary) -> None:
    """Inputs sorted by estimate on x; the band from certified lower bound to witness (or to
    max_radius without a witness) and the estimate as lines: a few SVG paths for any n."""
    ordered = rows.assign(_key=rows["radius_estimate"].fillna(rows["radius_lower"]).fillna(0.0))
    ordered = ordered.sort_values(["_key", "input_id"], kind="mergesort")
    if len(ordered) > MAX_BRACKET_INPUTS:
        picks = np.linspace(0, len(ordered) - 1, MAX_BRACKET_INPUTS).round().astype(int)
        ordered = ordered.iloc[picks]
        title = f"bracket per input ({MAX_BRACKET_INPUTS} of {len(rows)})"
    else:
        title = "bracket per input"
    top = group.max_radius or 1.0
    xs = np.arange(len(ordered))
    lower = ordered["radius_lower"].fillna(0.0).to_numpy(dtype=float)
    upper = ordered["radius_upper"].to_numpy(dtype=float)
    ax.fill_between(xs, lower, np.where(np.isnan(upper), top, upper), step="mid", color="#c6dbef",
                    linewidth=0, label="bracket")
    ax.plot(xs, lower, drawstyle="steps-mid", color=COLORS["radius_lower"], linewidth=0.9, label="certified")
    ax.plot(xs, upper, drawstyle="steps-mid", color=COLORS["radius_upper"], linewidth=0.9, label="witness")
    ax.plot(xs, ordered["radius_estimate"].to_numpy(dtype=float), drawstyle="steps-mid",
            color=COLORS["radius_estimate"], linewidth=1.1, label="estimate")
    ax.axhline(top, color="#777777", linewidth=0.6, linestyle="--")
    ax.set_title(title)
    ax.set_xlabel("inputs, sorted by estimate")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.set_ylabel(_radius_label(group))
    ax.set_xlim(-0.5, max(len(ordered) - 0.5, 0.5))
    ax.set_ylim(0, top * 1.05)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), frameon=False, ncol=2)


@_with_style
def comparison_figure(groups: list[GroupSummary]) -> str | None:
    """Fraction-safe curves of several models for one property and norm (summary report):
    certified (sound lower bound), no witness found (upper bound) and estimated (not a
    guarantee), one panel each on the same axes, r from 0 to the maximum radius."""
    groups = [g for g in groups if g.radii and g.n_inputs]
    if not groups:
        return None
    top = max((g.max_radius or max(g.radii)) for g in groups)
    fig = Figure(figsize=(7.2, 2.6))
    panels = fig.subplots(1, 3, sharex=True, sharey=True, gridspec_kw={"wspace": 0.22})
    handles = []
    for index, group in enumerate(groups):
        color = MODEL_COLORS[index % len(MODEL_COLORS)]
        width = 1.2 + 0.9 * (len(groups) - 1 - index)  # earlier models drawn wider: coinciding curves stay visible
        curves = (group.certified_fraction, 1 - np.asarray(group.risk_fraction), group.estimate_fraction)
        for ax, values, style in zip(panels, curves, ("-", ":", "--")):
            ax.step(group.radii, values, where="post", color=color, linestyle=style, linewidth=width)
        handles.append(Line2D([], [], color=color, linewidth=width, label=group.model))
    titles = ("certified safe\n(sound)", "no witness found\n(upper bound)", "estimated safe\n(not a guarantee)")
    for ax, title in zip(panels, titles):
        _radius_axis(ax, top)
        ax.set_title(title)
        ax.set_xlabel(_radius_label(groups[0]))
    panels[0].set_ylabel("fraction of inputs")
    panels[1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.38), frameon=False,
                     ncol=min(4, len(groups)))
    return svg_data_uri(fig)


DIFFERENCE_CMAP = matplotlib.colors.LinearSegmentedColormap.from_list(
    "saferisk-change", ["#2166ab", "#ffffff", "#b2182b"])  # blue down, white none, red up


@_with_style
def difference_figure(signed: np.ndarray, unit: str) -> str:
    """Heatmap of a witness's signed change per pixel (H, W) with a colour bar in `unit`,
    symmetric around 0 (white) up to the largest absolute change."""
    peak = float(np.abs(signed).max()) or 1.0
    height, width = signed.shape
    fig = Figure(figsize=(1.3, 0.9))  # shown at about this size: its 6.5 pt labels stay readable
    ax = fig.add_axes((0.0, 0.0, 0.62, 1.0))
    image = ax.imshow(signed, cmap=DIFFERENCE_CMAP, vmin=-peak, vmax=peak, interpolation="nearest",
                      extent=(0, width, height, 0))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # a thin full frame (the report style hides two sides)
        spine.set_visible(True)
        spine.set_linewidth(0.5)
        spine.set_color("#999999")
    bar = fig.colorbar(image, cax=fig.add_axes((0.66, 0.04, 0.06, 0.92)), ticks=[-peak, 0.0, peak])
    bar.ax.set_yticklabels([f"{-peak:.2g}", "0", f"+{peak:.2g}"])
    bar.ax.tick_params(labelsize=6.5, length=2)
    bar.set_label(f"change ({unit})", fontsize=6.5)
    return svg_data_uri(fig)
