"""The learning curves a run's folder carries: readable without the code — a title, the best checkpoint, each
unfreezing stage and the chance level marked — from a Trainer-shaped `log_history`."""

import matplotlib.pyplot as plt
import pytest

from vit_fer import plots


LOG_HISTORY = [
    {"loss": 1.95, "epoch": 0.5, "step": 5},
    {"eval_loss": 1.9, "eval_macro_f1": 0.2, "eval_uar": 0.25, "eval_accuracy": 0.3, "epoch": 1.0, "step": 10},
    {"loss": 1.4, "epoch": 1.5, "step": 15},
    {"eval_loss": 1.2, "eval_macro_f1": 0.6, "eval_uar": 0.62, "eval_accuracy": 0.65, "epoch": 2.0, "step": 20},
    {"loss": 1.1, "epoch": 2.5, "step": 25},
    {"eval_loss": 1.3, "eval_macro_f1": 0.55, "eval_uar": 0.6, "eval_accuracy": 0.6, "epoch": 3.0, "step": 30},
    {"train_runtime": 12.0, "epoch": 3.0, "step": 30},
    # The final evaluation of the best checkpoint, logged at the last epoch: not a point of the curves.
    {"eval_loss": 1.2, "eval_macro_f1": 0.6, "eval_uar": 0.62, "eval_accuracy": 0.65, "epoch": 3.0, "step": 30},
]


@pytest.fixture
def figure(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plots.plt, "close", kept.append)  # keep the figure open to read it back
    path = plots.plot_learning_curves(
        LOG_HISTORY, tmp_path / "curves.png", title="Early-fusion ViT: demo", best_step=20,
        stages=[(1, "head and the top 1 of 2 encoder layers"), (2, "head and the whole encoder")], chance=1 / 7,
    )  # fmt: skip
    assert path.is_file() and path.stat().st_size > 10_000
    yield kept[0]
    plt.close(kept[0])


def test_learning_curves_are_titled_and_marked(figure):
    assert figure._suptitle.get_text() == "Early-fusion ViT: demo"
    loss_axes, metric_axes = figure.axes
    metric_legend = [text.get_text() for text in metric_axes.get_legend().get_texts()]
    assert {"chance (0.14)", "unfreezing", "best (epoch 2)"} <= set(metric_legend)
    assert {"unfreezing", "best (epoch 2)"} <= {text.get_text() for text in loss_axes.get_legend().get_texts()}
    stage_names = [text.get_text().strip() for text in metric_axes.texts]
    assert stage_names == ["head and the top 1 of 2 encoder layers", "head and the whole encoder"]
    # Three validation points per metric: the evaluation after training is left out.
    macro_f1 = next(line for line in metric_axes.get_lines() if line.get_label() == "macro_f1")
    assert list(macro_f1.get_xdata()) == [1.0, 2.0, 3.0]
