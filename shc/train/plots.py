"""Training curves: loss per epoch for both stages, mAP over evaluated epochs (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

from shc.train.artifacts import atomic_write


def plot_history(stage1_history: list[dict], stage3_history: list[dict], path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in (("stage 1 (classifier)", stage1_history), ("stage 3 (hashing)", stage3_history)):
        if history:
            ax_loss.plot([r["epoch"] for r in history], [r["loss"] for r in history], marker=".", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax_loss.legend()
    evaluated = [r for r in stage3_history if r.get("mAP")]
    for key in (evaluated[0]["mAP"] if evaluated else {}):
        ax_map.plot([r["epoch"] for r in evaluated], [r["mAP"][key] for r in evaluated], marker="o",
                    label=f"mAP@{key}")
    ax_map.set(xlabel="epoch", ylabel="mAP (query set)", title="retrieval mAP")
    if evaluated:
        ax_map.legend()
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
