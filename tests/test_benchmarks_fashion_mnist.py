"""End-to-end test of benchmarks/fashion_mnist.py on a tiny subset (a few seconds on a CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from benchmark_scripts import load_benchmark, require_fashion_mnist

TINY = [
    "--train-subset", "256", "--test-subset", "128", "--epochs", "2", "--eval-epochs", "1",
    "--batch-size", "128", "--patch-size", "7", "--embed-dim", "32", "--depth", "1",
    "--num-heads", "2", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2",
    "--probe-epochs", "2", "--threads", "1",
]  # fmt: skip


def _load_script() -> ModuleType:
    return load_benchmark("fashion_mnist.py", "benchmark_fashion_mnist")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    pytest.importorskip("lightly")
    require_fashion_mnist()
    return _load_script()


def test_end_to_end_tiny_subset_writes_json_markdown_and_plot(
    bench: ModuleType, tmp_path: Path
) -> None:
    plot = tmp_path / "loss.png"
    result = bench.main([*TINY, "--output-dir", str(tmp_path), "--plot", str(plot)])

    saved = json.loads((tmp_path / "fashion_mnist.json").read_text())
    assert saved["rows"] == result["rows"]
    assert saved["config"]["seed"] == 0 and saved["config"]["epochs"] == 2
    assert saved["config"]["train_size"] == 256 and saved["config"]["test_size"] == 128
    assert saved["wall_time_s"] > 0 and saved["machine"]["device"] == "cpu"

    runs = {run["impl"]: run for run in saved["runs"]}
    assert set(runs) == {"ours", "lightly", "pixels"}
    for impl in ("ours", "lightly"):
        run = runs[impl]
        assert run["steps"] == 2 * (256 // 128) == len(run["losses"])
        assert all(math.isfinite(loss) and loss > 0 for loss in run["losses"])
        assert run["pretrain_wall_s"] > 0
    # Only "ours" is in --curve-impls: evaluated after epoch 1 and 2, Lightly after epoch 2.
    assert [e["epoch"] for e in runs["ours"]["evaluations"]] == [1, 2]
    assert [e["epoch"] for e in runs["lightly"]["evaluations"]] == [2]

    rows = saved["rows"]
    assert {(r["impl"], r["pool"], r["epochs"]) for r in rows} == {
        ("ours", "cls", 1), ("ours", "mean", 1), ("ours", "cls", 2), ("ours", "mean", 2),
        ("lightly", "cls", 2), ("lightly", "mean", 2), ("raw pixels", "-", 0),
    }  # fmt: skip
    for row in rows:
        for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5"):
            assert 0.0 <= row[key] <= 100.0
        assert row["knn_top5"] >= row["knn_top1"] and row["linear_top5"] >= row["linear_top1"]
    pixels = next(r for r in rows if r["impl"] == "raw pixels")
    # Raw pixels with kNN are far above chance (10 %) even with 256 training images.
    assert pixels["knn_top1"] > 40.0

    markdown = (tmp_path / "fashion_mnist.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == len(rows) + 2  # header, separator, one line per row
    assert "| raw pixels | - | 0 |" in markdown
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stream_is_identical_for_every_implementation(bench: ModuleType) -> None:
    args = bench.parse_args([*TINY, "--epochs", "1"])
    data = bench.Split(torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8), torch.zeros(300))
    device = torch.device("cpu")
    first = list(bench.pretraining_stream(data, args, 17, device))
    second = list(bench.pretraining_stream(data, args, 17, device))
    assert len(first) == 300 // 128
    for (e1, x1, keep1, mask1), (e2, x2, keep2, mask2) in zip(first, second, strict=True):
        assert e1 == e2 and torch.equal(x1, x2)
        assert torch.equal(keep1, keep2) and torch.equal(mask1, mask2)
        assert keep1.shape == (128, 1 + 4) and mask1.shape == (128, 12)  # 16 patches, 75 %
    # Different steps draw different crops and masks.
    assert not torch.equal(first[0][1], first[1][1]) and not torch.equal(first[0][3], first[1][3])


def test_ours_and_lightly_wiring_compute_the_same_loss(bench: ModuleType) -> None:
    """With Lightly's weights copied into ours, both wirings give the same loss: the benchmark
    compares implementations of one algorithm, not two different objectives."""
    args = bench.parse_args(TINY)
    for norm_pix in (False, True):
        args.norm_pix = norm_pix
        ours, lightly = bench.build_model("ours", args), bench.build_model("lightly", args)
        renamed = {
            "decoder_embed": "decoder.decoder_embed",
            "decoder.blocks": "decoder.decoder_blocks",
            "decoder.norm": "decoder.decoder_norm",
            "decoder.pos_embed": "decoder.decoder_pos_embed",
            "decoder.mask_token": "decoder.mask_token",
            "prediction_head": "decoder.decoder_pred",
        }
        state = {}
        for key, value in lightly.state_dict().items():
            for old, new in renamed.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            state[key] = value
        ours.load_state_dict(state)
        images = torch.randn(4, 1, 28, 28)
        generator = torch.Generator().manual_seed(1)
        idx_keep, idx_mask = bench.random_token_mask((4, 17), 0.75, generator=generator)
        torch.testing.assert_close(
            ours(images, idx_keep, idx_mask), lightly(images, idx_keep, idx_mask)
        )


def test_optional_finetune_adds_a_row(bench: ModuleType, tmp_path: Path) -> None:
    args = [*TINY, "--impl", "ours", "--baseline", "none", "--eval-epochs", "--epochs", "1"]
    result = bench.main(
        [*args, "--finetune-epochs", "1", "--output-dir", str(tmp_path), "--plot", ""]
    )
    finetuned = [row for row in result["rows"] if row["impl"] == "ours fine-tuned"]
    assert len(finetuned) == 1 and finetuned[0]["epochs"] == 1
    assert 0.0 <= finetuned[0]["finetune_top1"] <= finetuned[0]["finetune_top5"] <= 100.0
    assert "(fine-tune)" in (tmp_path / "fashion_mnist.md").read_text()


def test_rejects_invalid_arguments(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--patch-size", "5"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--mask-ratio", "1.0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--epochs", "0"])


def _load_recipes() -> ModuleType:
    return load_benchmark("recipes/mae_recipes.py", "benchmark_mae_recipes")


def test_imagenet_recipes_use_the_official_hyper_parameters() -> None:
    pytest.importorskip("pytorch_lightning")
    recipes = _load_recipes().RECIPES
    for epochs in (800, 1600):
        pretrain = recipes[f"in1k_vitb16_pretrain_{epochs}"]
        assert (pretrain.epochs, pretrain.batch_size, pretrain.base_lr) == (epochs, 4096, 1.5e-4)
        assert (pretrain.weight_decay, pretrain.warmup_epochs) == (0.05, 40)
        assert pretrain.options["mask_ratio"] == 0.75 and pretrain.options["norm_pix_loss"]
        assert pretrain.arch == {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12}
        assert pretrain.options["decoder_embed_dim"] == 512
        assert pretrain.options["decoder_depth"] == 8
    probe = recipes["in1k_vitb16_linprobe"]
    assert (probe.epochs, probe.batch_size, probe.base_lr, probe.weight_decay) == (
        90,
        16384,
        0.1,
        0,
    )
    assert probe.options["optimizer"] == "lars" and probe.warmup_epochs == 10
    tune = recipes["in1k_vitb16_finetune"]
    assert (tune.epochs, tune.batch_size, tune.base_lr, tune.warmup_epochs) == (100, 1024, 5e-4, 5)
    assert tune.options["layer_decay"] == 0.65 and tune.options["drop_path"] == 0.1
    assert (tune.options["mixup"], tune.options["cutmix"], tune.options["reprob"]) == (0.8, 1, 0.25)
    assert {"cifar10_vits4_pretrain_800", "cifar100_vits4_finetune"} <= set(recipes)


@pytest.mark.slow
def test_recipe_stages_run_in_smoke_mode(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    recipes = _load_recipes()
    out = ["--output-dir", str(tmp_path)]
    recipes.main(["--recipe", "cifar10_vits4_pretrain_800", "--smoke", *out])
    checkpoint = tmp_path / "cifar10_vits4_pretrain_800" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    for stage in ("linprobe", "finetune"):
        recipes.main(
            [f"--recipe=cifar10_vits4_{stage}", "--smoke", "--checkpoint", str(checkpoint), *out]
        )


def test_validation_split_holds_out_the_last_training_images(bench: ModuleType) -> None:
    args = bench.parse_args(["--train-subset", "300", "--split", "val", "--val-size", "100"])
    train, held_out = bench.load_splits(args)
    full = bench.load_split(True, 300, None)
    assert train.images.shape[0] == 200 and held_out.images.shape[0] == 100
    assert torch.equal(held_out.images, full.images[200:])
    assert torch.equal(train.labels, full.labels[:200])


def test_feature_protocols(bench: ModuleType) -> None:
    protocol = bench.parse_protocol("mean-last4-cat")
    assert (protocol.pool, protocol.layers, protocol.combine) == ("mean", 4, "concat")
    assert bench.parse_protocol("cls").layers == 1
    assert bench.parse_protocol("cls-last2-avg").combine == "mean"
    for bad in ("max", "mean-last0-cat", "mean-last2-sum"):
        with pytest.raises(ValueError):
            bench.parse_protocol(bad)
    with pytest.raises(SystemExit):  # the TINY encoder has one block
        bench.parse_args([*TINY, "--pools", "mean-last2-cat"])
    args = bench.parse_args([*TINY, "--depth", "2"])
    backbone = bench.build_model("ours", args).backbone
    data = bench.Split(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8), torch.zeros(3))
    protocols = ["cls", "mean", "mean-last2-cat", "mean-last2-avg"]
    features = bench.extract(backbone, data, torch.device("cpu"), protocols)
    assert [features[p].shape[1] for p in protocols] == [32, 32, 64, 32]


def test_budgeted_run_with_partial_decoding_finetune_and_scratch(
    bench: ModuleType, tmp_path: Path
) -> None:
    result = bench.main(
        [*TINY, "--impl", "ours", "--baseline", "none", "--eval-epochs", "--epochs", "2",
         "--max-steps", "4", "--batch-size", "64", "--decode-ratio", "0.5",
         "--split", "val", "--val-size", "64",
         "--finetune-epochs", "1", "--finetune-max-steps", "1", "--scratch-epochs", "1",
         "--scratch-max-steps", "1", "--finetune-batch-size", "64",
         "--output-dir", str(tmp_path), "--plot", ""]
    )  # fmt: skip
    ours = next(run for run in result["runs"] if run["impl"] == "ours")
    assert ours["steps"] == 4 and ours["evaluations"][-1]["epoch"] == 1.33  # 3 steps per epoch
    assert result["config"]["test_size"] == 64 and result["config"]["train_size"] == 192
    assert "load_before" in result and ours["pretrain_cpu_s"] > 0
    impls = {row["impl"] for row in result["rows"]}
    assert {"ours", "ours fine-tuned", "scratch (supervised)"} <= impls


def test_search_budgets_steps_from_measured_throughput() -> None:
    search = load_benchmark("fashion_mnist_search.py", "benchmark_fashion_mnist_search")
    rates = {"base/pretrain": 500.0, "p7_normpix/pretrain": 300.0, "p4/pretrain": 100.0}
    # norm-pix has the same step compute as base: both use the median of their rates.
    assert search.pretrain_rate("p7_normpix", rates) == search.pretrain_rate("base", rates) == 400
    assert search.steps_for_budget("p4", 256.0, rates) == 100
    assert "--norm-pix" in search.candidate_args("p7_normpix")
    lightly = search.lightly_example("p7_dec1")
    assert search.CANDIDATES[lightly]["--decoder-dim"] == "512"
    assert search.CANDIDATES[lightly]["--impl"] == "lightly"


def test_final_needs_only_the_rates_of_the_arms_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = load_benchmark("fashion_mnist_search.py", "benchmark_fashion_mnist_search")
    rates = {"p7_dec1/pretrain": 1024.0, "p7_dec1/supervised": 512.0}
    throughput = tmp_path / "throughput.json"
    throughput.write_text(json.dumps({"img_per_s": rates}))
    runs: list[list[str]] = []
    monkeypatch.setattr(search.bench, "main", lambda argv: runs.append(list(argv)))
    common = ["final", "p7_dec1", "--budget-s", "100", "--finetune-budget-s", "50"]
    common += ["--throughput", str(throughput), "--output-dir", str(tmp_path)]
    search.main([*common, "--arms", "finetune", "scratch"])
    finetune, scratch = runs
    # 100 s at 1024 img/s in batches of 256 = 400 steps; 50 s at 512 img/s = 100 steps; the
    # scratch arm gets the sum of both budgets at the supervised rate, 150 s = 300 steps.
    assert finetune[finetune.index("--max-steps") + 1] == "400"
    assert finetune[finetune.index("--finetune-max-steps") + 1] == "100"
    assert scratch[scratch.index("--scratch-max-steps") + 1] == "300"
    with pytest.raises(SystemExit, match="lightly_example_p7_dec1/pretrain"):
        search.main([*common, "--arms", "lightly"])
