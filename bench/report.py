"""Rows of results, their targets, and the three ways they are shown: the terminal table, the PNG
plot (matplotlib, Agg) and the results block of ``docs/benchmarks.md``."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from bench.workloads import Sample

LABELS = {"ours": "registry", "dist": "Distribution"}
BEGIN = "<!-- bench-results:begin (written by `make bench`; edits here are overwritten) -->"
END = "<!-- bench-results:end -->"


@dataclasses.dataclass
class Target:
    """``ratio_ge``/``ratio_le``: our median over Distribution's; ``ours_le``: our median alone;
    ``cpu_le``: also our median CPU per unit; ``cpu_ratio_le``: also our median CPU per unit over
    Distribution's; ``none``: shown for information."""

    kind: str
    value: float = 0.0
    cpu_le: float | None = None
    cpu_ratio_le: float | None = None

    def describe(self, unit: str, cpu_unit: str) -> str:
        if self.kind == "ratio_ge":
            text = f">= {self.value:g}x"
        elif self.kind == "ratio_le":
            text = f"<= {self.value:g}x"
        elif self.kind == "ours_le":
            text = f"<= {self.value:g} {unit}"
        else:
            return "-"
        if self.cpu_le is not None:
            text += f", <= {self.cpu_le:g} {cpu_unit.replace('CPU ', '')} CPU"
        if self.cpu_ratio_le is not None:
            text += f", CPU <= {self.cpu_ratio_le:g}x"
        return text


def _cpu_limit(row: Row) -> float | None:
    """The CPU per unit our median must stay under, absolute or as a share of Distribution's."""
    if row.target.cpu_le is not None:
        return row.target.cpu_le
    dist = row.cpu_median("dist")
    if row.target.cpu_ratio_le is not None and dist:
        return row.target.cpu_ratio_le * dist
    return None


@dataclasses.dataclass
class Row:
    key: str
    title: str
    unit: str
    better: str  # "higher" or "lower"
    target: Target = dataclasses.field(default_factory=lambda: Target("none"))
    cpu_unit: str = ""
    values: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {"ours": [], "dist": []})
    cpu: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {"ours": [], "dist": []})
    extras: dict[str, list[dict]] = dataclasses.field(default_factory=lambda: {"ours": [], "dist": []})
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    show_ratio: bool = True

    def record(self, kind: str, sample: Sample) -> None:
        self.values[kind].append(sample.value)
        if sample.cpu is not None:
            self.cpu[kind].append(sample.cpu)
        if sample.extra:
            self.extras[kind].append(sample.extra)

    def median(self, kind: str) -> float | None:
        return statistics.median(self.values[kind]) if self.values[kind] else None

    def cpu_median(self, kind: str) -> float | None:
        return statistics.median(self.cpu[kind]) if self.cpu[kind] else None

    def ratio(self) -> float | None:
        ours, dist = self.median("ours"), self.median("dist")
        if ours is None or not dist:
            return None
        return ours / dist

    def passed(self) -> bool | None:
        """Whether the target is met; ``None`` when the row has no target or no figures."""
        t = self.target
        ours = self.median("ours")
        if t.kind == "none" or ours is None:
            return None
        if t.kind == "ours_le":
            ok = ours <= t.value
        else:
            ratio = self.ratio()
            if ratio is None:
                return None
            ok = ratio >= t.value if t.kind == "ratio_ge" else ratio <= t.value
        if t.cpu_le is not None:
            cpu = self.cpu_median("ours")
            ok = ok and cpu is not None and cpu <= t.cpu_le
        if t.cpu_ratio_le is not None:
            cpu, cpu_dist = self.cpu_median("ours"), self.cpu_median("dist")
            ok = ok and cpu is not None and bool(cpu_dist) and cpu / cpu_dist <= t.cpu_ratio_le
        return ok

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Row:
        d = dict(d)
        d["target"] = Target(**d["target"])
        return cls(**d)


#: The order of the table (the issue's): rows are produced in whatever order the phases run.
ORDER = ("upload_mono", "upload_chunked", "download", "manifest", "push", "rss", "catalog")


def in_order(rows: list[Row]) -> list[Row]:
    def rank(row: Row) -> int:
        return next((i for i, prefix in enumerate(ORDER) if row.key.startswith(prefix)), len(ORDER))

    return sorted(rows, key=rank)


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _cell(row: Row, kind: str) -> str:
    vals = row.values[kind]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"


def _result(row: Row) -> str:
    p = row.passed()
    return "-" if p is None else "PASS" if p else "MISS"


def _times(ratio: float) -> str:
    """``2.60x``; small ratios keep two significant digits (a catalog page at 0.005x, not 0.00x)."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _ratio(row: Row) -> str:
    r = row.ratio() if row.show_ratio else None
    return "-" if r is None else _times(r)


def cells(row: Row) -> list[str]:
    cpu_unit = row.cpu_unit.replace("CPU ", "") if row.cpu_unit else ""
    return [
        f"{row.title} ({row.unit})",
        _cell(row, "ours"),
        _cell(row, "dist"),
        _ratio(row),
        f"{fmt(row.cpu_median('ours'))} / {fmt(row.cpu_median('dist'))} {cpu_unit}" if row.cpu_unit else "-",
        row.target.describe(row.unit, row.cpu_unit),
        _result(row),
    ]


HEADER = ["workload (unit)", "registry: median [range]", "Distribution: median [range]", "ratio",
          "server CPU per unit (ours / Dist)", "target", "result"]


def table(rows: list[Row]) -> str:
    data = [HEADER] + [cells(r) for r in rows]
    widths = [max(len(r[i]) for r in data) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(data):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def one_line(row: Row) -> str:
    c = cells(row)
    return f"{c[0]}: {c[1]} vs {c[2]} -> {c[3]}; CPU {c[4]}; target {c[5]}: {c[6]}"


def markdown_table(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        c = cells(r)
        c[6] = {"PASS": "**pass**", "MISS": "**miss**"}.get(c[6], c[6])
        out.append("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
    return "\n".join(out)


# -- the plot --------------------------------------------------------------------------------------

_PANELS = [
    # title, key prefixes, which figure, log scale, target line attribute
    ("Upload and download (MB/s, higher is better)", ("upload", "download"), "value", False),
    ("Manifest requests, server on one core (req/s)", ("manifest",), "value", False),
    ("Server CPU per manifest request (ms)", ("manifest",), "cpu", False),
    ("8 clients pushing (wall s, lower is better)", ("push",), "value", False),
    ("Peak RSS (MiB)", ("rss_",), "value", False),
    ("Catalog first page (ms, log scale)", ("catalog",), "value", True),
]


def _short(row: Row) -> str:
    t = row.title
    for a, b in (("upload ", "up "), (", monolithic (POST + PUT)", "\nmonolithic"), (" in ", "\n"),
                 ("manifest by tag, ", ""), (" connections, 1 core", " conns"), (" (wrk, cross-check)", "\nwrk"),
                 ("peak RSS pushing + pulling a ", ""), (" blob", ""), ("RSS growth from ", "growth\n"),
                 ("catalog first page (n=100), ", ""), (" repositories ", " repos\n"), ("download ", "down "),
                 ("PATCHes", "chunks"), (" + manifest", "")):
        t = t.replace(a, b)
    return t


def plot(rows: list[Row], path: Path, env: dict) -> Path | None:
    """Draw every row as a pair of bars (median, with the range as an error bar); ``None`` if
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib, or make bench)")
        return None
    panels = []
    for title, prefixes, which, log in _PANELS:
        chosen = [r for r in rows if r.key.startswith(prefixes) and (which == "value" or r.cpu["ours"])]
        if chosen:
            panels.append((title, chosen, which, log))
    if not panels:
        return None
    cols = 2
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(14, 4.6 * nrows), squeeze=False)
    colors = {"ours": "#2a7fb8", "dist": "#a0a0a0"}
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, chosen, which, log) in zip(axes.flat, panels, strict=False):
        width = 0.38
        for j, kind in enumerate(("ours", "dist")):
            meds, lo, hi, xs = [], [], [], []
            for i, r in enumerate(chosen):
                vals = r.values[kind] if which == "value" else r.cpu[kind]
                if not vals:
                    continue
                m = statistics.median(vals)
                xs.append(i + (j - 0.5) * width)
                meds.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, color=colors[kind], label=LABELS[kind])
        for i, r in enumerate(chosen):
            if which == "value":
                ratio, result = (r.ratio() if r.show_ratio else None), _result(r)
                label = (_times(ratio) if ratio is not None else "") + (f"\n{result}" if result != "-" else "")
            else:  # our CPU per unit, written above our own bar (Distribution's dwarfs it)
                cpu = r.cpu_median("ours")
                if cpu is None:
                    continue
                limit = _cpu_limit(r)
                result = "" if limit is None else "PASS" if cpu <= limit else "MISS"
                ax.annotate(f"{cpu:.3f}\n{result}".strip(), (i - width / 2, max(r.cpu["ours"])),
                            textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8,
                            color="#b00" if result == "MISS" else "#060")
                continue
            top = max((max(v) for v in (r.values[k] for k in ("ours", "dist")) if v), default=0)
            ax.annotate(label, (i, top), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8,
                        color="#b00" if "MISS" in label else "#060")
        for i, r in enumerate(chosen):  # each row's own target, drawn across its pair of bars
            t = r.target.value if which == "value" and r.target.kind == "ours_le" else \
                _cpu_limit(r) if which == "cpu" else None
            if t is not None:
                ax.hlines(t, i - 0.48, i + 0.48, color="#c33", linestyle="--", linewidth=1)
                ax.annotate(f"target {t:g}", (i + 0.48, t), fontsize=7, color="#c33", ha="right", va="bottom")
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xticks(range(len(chosen)))
        ax.set_xticklabels([_short(r) for r in chosen], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    dist = (env.get("distribution") or "").split()
    fig.suptitle(f"registry vs Distribution {dist[-1] if dist else ''} - {env.get('cpu', '')}"
                 " - medians, bars span min-max over repeats", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- docs ------------------------------------------------------------------------------------------


def results_block(rows: list[Row], data: dict) -> str:
    env = data["environment"]
    s = data["settings"]
    lines = [
        BEGIN,
        "",
        f"Run of {env['date']} on {env['cpu']}, Linux {env['kernel']}; Python {env['python']}, Falcon "
        f"{env['falcon']}, waitress {env['waitress']}; `{env['distribution']}`. "
        f"{s['repeats']} alternated repeats of the transfers, {s['load_repeats']} of each manifest load "
        f"({s['load_seconds']:g} s each); {data['minutes']} minutes in all. Load average (1 min) "
        f"{env.get('load_start', '?')} at the start, {env.get('load_end', '?')} at the end: other work "
        "shares this machine, so read the CPU columns and the ratios (both registries see the same noise) "
        "before the absolute rates.",
        "",
        markdown_table(rows),
        "",
    ]
    lines += [f"- {note}" for note in data.get("notes", [])]
    lines += ["", "![registry versus Distribution](bench.png)", "", END]
    return "\n".join(lines)


def update_docs(path: Path, rows: list[Row], data: dict) -> None:
    """Replace the results block of ``path`` (between the markers), or append one."""
    block = results_block(rows, data)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
