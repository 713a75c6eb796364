"""The size and shape of the bad-input suite, per class of outcome (issue 13).

Every malformed input of ``tests/reliability/`` belongs to one class:

* *clear error*: a documented ``TypeError``/``ValueError``/``OSError``... naming the argument
  (``test_bad_input.py`` and ``test_clear_errors.py``), or for the CLI one ``ssl-mae: error:``
  line and exit status 2;
* *correct result*: the value that comes out is checked (``test_correct_results.py``);
* *skipped and counted*: a hostile entry of an image folder is skipped, counted and named
  (``test_skipped_and_counted.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .test_bad_input import API_CASES, CLI_CASES
from .test_clear_errors import ERROR_CASES
from .test_correct_results import RESULT_CASES
from .test_skipped_and_counted import SKIP_CASES

CLASSES: dict[str, list[Any]] = {
    "clear error": [*API_CASES, *CLI_CASES, *ERROR_CASES],
    "correct result": RESULT_CASES,
    "skipped and counted": SKIP_CASES,
}


def case_counts() -> Counter[str]:
    """Number of bad-input cases per class."""
    return Counter({name: len(cases) for name, cases in CLASSES.items()})


def test_the_suite_has_at_least_250_bad_input_cases_in_three_classes() -> None:
    counts = case_counts()
    assert sum(counts.values()) >= 250, counts
    assert all(counts[name] >= 10 for name in CLASSES), counts


def test_every_case_has_its_own_id() -> None:
    ids = [param.id for cases in CLASSES.values() for param in cases]
    assert all(ids) and len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


def test_every_issue_13_case_is_in_the_suite() -> None:
    """The representative inputs listed in issue 13 (library part) each have a case."""
    ids = {param.id for cases in CLASSES.values() for param in cases}
    listed = {
        "issue13-restore-index-duplicates", "issue13-restore-index-overlap",
        "issue13-token-mask-nan-noise", "issue13-random-masking-keeps-no-token",
        "issue13-patchify-0x0-image", "issue13-loss-over-zero-patches-is-0",
        "issue13-loss-norm-pix-one-pixel-patches", "issue13-loss-eps-inf",
        "issue13-decoder-depth-negative", "issue13-mae-decoder-depth-negative",
        "issue13-hivit-decoder-depth-negative", "issue13-mae-layer-norm-eps-negative",
        "issue13-mae-lr-inf", "issue13-mae-base-lr-nan", "issue13-transform-nan-mean",
        "issue13-transform-inf-std", "issue13-transform-scales-float-pil-images-of-200",
        "issue13-fifo-named-like-an-image", "issue13-folder-without-read-permission",
        "issue13-folder-that-cannot-be-listed", "issue13-knn-small-temperature-keeps-the-ranking",
        "issue13-knn-k-larger-than-the-bank-is-clamped", "issue13-knn-nan-in-bank",
        "issue13-get-at-index-int16-indices", "issue13-set-at-index-uint8-indices",
        "issue13-encode-uint8-indices", "issue13-interpolate-batch-of-2",
        "issue13-interpolate-100-prefix-tokens",
        "issue13-from-timm-width-not-divisible-by-heads", "issue13-decoder-embed-dim-str",
        "issue13-decoder-mlp-ratio-negative", "issue13-decoder-width-30-heads-3",
        "issue13-predict-masked-wrong-width", "issue13-mae-forward-generator-int",
        "issue13-hivit-forward-float64", "issue13-from-pretrained-config-not-utf8",
        "issue13-from-pretrained-layer-norm-eps-str",
        "issue13-from-pretrained-truncated-safetensors",
        "issue13-from-pretrained-bin-holds-a-list", "issue13-load-official-directory",
        "issue13-linear-probe-batch-size-1", "issue13-topk-empty",
        "issue13-from-pretrained-shard-path-traversal",
        "issue13-from-pretrained-absolute-shard-path",
    }  # fmt: skip
    assert listed <= ids, sorted(listed - ids)
