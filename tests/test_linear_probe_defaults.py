"""The linear probe's defaults: full-batch L-BFGS reaches scikit-learn's ``LogisticRegression``,
mini-batch settings choose LARS with a schedule derived from the set size."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ssl_mae.evaluation import train_linear_probe
from ssl_mae.evaluation.linear_probe import (
    LBFGS_MAX_VALUES,
    choose_optimizer,
    default_probe_schedule,
)


def _hard_problem(n_train: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Overlapping classes with feature scales from 0.01 to 100 (as frozen features have)."""
    generator = torch.Generator().manual_seed(seed)
    dim, classes = 24, 5
    centres = torch.randn(classes, dim, generator=generator)
    scales = torch.logspace(-2, 2, dim)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, classes, (n,), generator=generator)
        points = centres[labels] + 1.5 * torch.randn(n, dim, generator=generator)
        return points * scales + 3.0, labels

    return (*draw(n_train), *draw(2000))


def test_the_mini_batch_schedule_follows_the_set_size() -> None:
    assert default_probe_schedule(2000) == (128, 200)  # 15 steps per epoch, 3000 steps
    assert default_probe_schedule(60_000) == (1024, 52)
    assert default_probe_schedule(16) == (16, 3000)  # a batch is at most the set
    assert default_probe_schedule(5) == (5, 3000)
    assert default_probe_schedule(10_000_000) == (1024, 30)


def test_auto_picks_lbfgs_unless_a_mini_batch_setting_is_given_or_the_set_is_huge() -> None:
    assert choose_optimizer("auto", 60_000, 768, minibatch_settings=False) == "lbfgs"
    assert choose_optimizer("auto", 60_000, 768, minibatch_settings=True) == "lars"
    assert choose_optimizer("auto", LBFGS_MAX_VALUES // 768 + 1, 768, False) == "lars"
    assert choose_optimizer("sgd", 10, 10, False) == "sgd"
    with pytest.raises(ValueError, match="optimizer must be one of"):
        choose_optimizer("adam", 10, 10, False)


@pytest.mark.parametrize("n_train", [200, 3000])
def test_defaults_reach_scikit_learns_logistic_regression(n_train: int) -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, train_y, test_x, test_y = _hard_problem(n_train)
    assert sklearn is not None
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    reference.fit(train_x.numpy(), train_y.numpy())
    theirs = float(reference.score(test_x.numpy(), test_y.numpy()))
    result = train_linear_probe(train_x, train_y, test_x, test_y, 5)
    assert result["settings"]["optimizer"] == "lbfgs"
    assert result["settings"]["batch_size"] == n_train
    assert result["settings"]["weight_decay"] == pytest.approx(1 / n_train)
    assert result["top1"] >= theirs - 0.002, (result["top1"], theirs)
    # The same classifier: the decisions agree almost everywhere.
    ours = result["probe"].eval()(test_x).argmax(dim=1)
    agree = (ours.numpy() == reference.predict(test_x.numpy())).mean()
    assert agree > 0.99


def test_lbfgs_records_its_history_and_refuses_a_mini_batch() -> None:
    train_x, train_y, test_x, test_y = _hard_problem(300)
    result = train_linear_probe(
        train_x, train_y, test_x, test_y, 5, optimizer="lbfgs", eval_every=5
    )
    history = result["history"]
    assert history["test_epoch"][0] == 5.0 and len(history["train_loss"]) == len(
        history["test_top1"]
    )
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert result["settings"]["epochs"] == history["test_epoch"][-1]
    with pytest.raises(ValueError, match="optimizer='lbfgs' trains on the whole set"):
        train_linear_probe(train_x, train_y, test_x, test_y, 5, optimizer="lbfgs", batch_size=32)


def test_a_mini_batch_setting_trains_lars_with_the_derived_schedule() -> None:
    train_x, train_y, test_x, test_y = _hard_problem(400)
    result = train_linear_probe(train_x, train_y, test_x, test_y, 5, epochs=3)
    assert result["settings"]["optimizer"] == "lars"
    assert result["settings"]["batch_size"] == 32 and result["settings"]["weight_decay"] == 0.0
    assert len(result["history"]["train_loss"]) == 3
