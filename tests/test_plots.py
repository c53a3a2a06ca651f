"""labkit.plots: loss curves, memory bars and parameter bars drawn from run dicts."""
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from labkit.plots import plot_losses, plot_matrix, plot_memory, plot_params  # noqa: E402

RUNS = [
    {"name": "full", "total_params": 2_000_000, "trainable_params": 2_000_000, "peak_memory_mb": 300.0,
     "memory_kind": "cpu_rss", "loss_history": [[1, 3.0], [2, 2.5], [3, 2.0]]},
    {"name": "lora", "total_params": 2_008_192, "trainable_params": 8_192, "peak_memory_mb": 120.0,
     "memory_kind": "cpu_rss", "loss_history": [[1, 3.1], [2, 2.9]]},
    {"name": "prompting", "total_params": 2_000_000, "trainable_params": 0, "peak_memory_mb": 50.0,
     "memory_kind": "cpu_rss"},
]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _renders(ax):
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_plot_losses_draws_one_curve_per_run_with_history():
    ax = plot_losses(RUNS)
    assert [line.get_label() for line in ax.lines] == ["full", "lora"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert list(ax.lines[1].get_ydata()) == [3.1, 2.9]
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["full", "lora"]
    _renders(ax)


def test_plot_losses_without_history_says_so():
    ax = plot_losses(RUNS[2:])
    assert not ax.lines
    assert "no loss history" in ax.texts[0].get_text()


def test_plot_memory_bars_are_the_peaks():
    ax = plot_memory(RUNS)
    assert [bar.get_height() for bar in ax.patches] == [300.0, 120.0, 50.0]
    assert [t.get_text() for t in ax.texts] == ["300", "120", "50"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full", "lora", "prompting"]
    assert "cpu_rss" in ax.get_ylabel()
    _renders(ax)


def test_plot_params_log_scale_total_and_trainable():
    ax = plot_params(RUNS)
    assert ax.get_yscale() == "log"
    heights = [bar.get_height() for bar in ax.patches]
    assert heights[:3] == [2_000_000, 2_008_192, 2_000_000]  # total
    assert heights[3:] == [2_000_000, 8_192, 1]              # trainable (0 drawn at 1 on a log axis)
    labels = [t.get_text() for t in ax.texts]
    assert labels[3:] == ["2M (100%)", "8.19k (0.41%)", "0 (0%)"]
    assert labels[:3] == ["2M", "2.01M", "2M"]
    _renders(ax)


def test_leaves_matplotlib_settings_alone():
    before = dict(matplotlib.rcParams)
    interactive = matplotlib.is_interactive()
    plot_losses(RUNS), plot_memory(RUNS), plot_params(RUNS)
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.is_interactive() == interactive


def test_draws_on_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_losses(RUNS, ax=left) is left
    assert plot_memory(RUNS, ax=right) is right


def test_plot_matrix_annotates_every_cell_and_bolds_each_column_best():
    import pandas as pd

    table = pd.DataFrame([[0.9, 0.1], [0.2, 0.8], [0.0, 0.0]], index=["a", "b", "base"], columns=["x", "y"])
    ax = plot_matrix(table, title="t")
    cells = {t.get_text(): t.get_fontweight() for t in ax.texts}
    assert set(cells) == {"0.90", "0.10", "0.20", "0.80", "0.00"}
    assert cells["0.90"] == "bold" and cells["0.80"] == "bold" and cells["0.10"] == "normal"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "base"]
    plt.close(ax.figure)
