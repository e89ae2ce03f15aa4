"""The report's training curves: the binary model's loss (distillation included, about 15x the teacher's) must not
flatten the teacher's curve, and the validation that chose the kept epoch is shown with that epoch marked."""

import numpy as np

from retrieval.evaluation.report import curves_figure, training_curves


def curve(losses, validation=None, kept=None):
    out = []
    for i, loss in enumerate(losses):
        e = {"epoch": i + 1, "loss": loss, "pair_accuracy": 0.5 + 0.05 * i}
        if validation is not None:
            e.update(validation=validation[i], kept=i + 1 == kept)
        out.append(e)
    return out


def test_losses_of_different_scales_share_a_log_axis_and_the_kept_epoch_is_marked():
    fig = curves_figure(
        {
            "ames": curve([0.62, 0.45, 0.30], validation=[63.7, 68.7, 68.1], kept=2),
            "ames_binary": curve([13.6, 6.6, 3.5]),
        }
    )
    loss, acc, val = fig.axes
    assert loss.get_yscale() == "log"
    lo, hi = loss.get_ylim()
    assert lo < 0.30 and hi > 13.6  # both curves inside the axis
    # on the log axis the teacher's curve spans a visible part of it (a linear axis gave it 3%)
    span = (np.log(0.62) - np.log(0.30)) / (np.log(hi) - np.log(lo))
    assert span > 0.15
    assert [line.get_label() for line in val.get_lines()] == ["ames", "ames: kept"]
    star = val.get_lines()[1]
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [68.7]
    assert acc.get_ylabel() == "pair accuracy"


def test_without_validation_there_is_no_validation_panel():
    fig = curves_figure({"ames_binary": curve([13.6, 6.6])})
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert training_curves({}) == ""
    assert training_curves({"ames": curve([0.5, 0.4])}).startswith("<img")
