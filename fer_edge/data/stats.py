"""Class counts per split, printed and drawn as a histogram PNG."""
from __future__ import annotations

from pathlib import Path


def split_counts(spec: str, splits=None, **kwargs) -> dict[str, dict[str, int]]:
    from fer_edge.data import DATASETS, open_dataset

    kind = spec.partition(":")[0]
    out = {}
    for split in splits or DATASETS.get(kind, ("all",)):
        out[split] = open_dataset(spec, split, **kwargs).class_counts()
    return out


def format_table(counts: dict[str, dict[str, int]]) -> str:
    classes = list(next(iter(counts.values())))
    lines = [f"{'class':12s}" + "".join(f"{s:>10s}" for s in counts)]
    for c in classes:
        lines.append(f"{c:12s}" + "".join(f"{counts[s][c]:>10d}" for s in counts))
    lines.append(f"{'total':12s}" + "".join(f"{sum(counts[s].values()):>10d}" for s in counts))
    return "\n".join(lines)


def save_histogram(counts: dict[str, dict[str, int]], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = list(next(iter(counts.values())))
    x = np.arange(len(classes))
    width = 0.8 / len(counts)
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, (split, c) in enumerate(counts.items()):
        ax.bar(x + k * width, [c[name] for name in classes], width, label=f"{split} ({sum(c.values())})")
    ax.set_xticks(x + width * (len(counts) - 1) / 2, classes, rotation=30)
    ax.set_ylabel("faces")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
