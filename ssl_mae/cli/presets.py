"""``ssl-mae presets``: every preset with its size, cost, native input and defaults.

Parameter counts and FLOPs are facts of the architecture; building a ViT-H to count them takes
seconds, so they are kept here as data (:data:`PRESET_FACTS`). :func:`measure_preset` computes
them (the model is built on the ``meta`` device and one MAE step is counted with
``torch.utils.flop_counter``); a test checks the table against it, and ``ssl-mae presets
--measure`` recomputes it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PRESET_FACTS", "PresetFacts", "add_parser", "measure_preset", "run"]


@dataclass(frozen=True)
class PresetFacts:
    """Size and cost of a preset at its native input.

    Attributes:
        parameters: All parameters (encoder, decoder; fixed position tables included).
        encoder_parameters: Parameters of the encoder, what a downstream task keeps.
        forward_flops: FLOPs of one image's MAE forward pass at the preset's mask ratio
            (matrix products; a training step costs about 3x).
        img_size: Native input side in pixels.
        in_chans: Native input channels.
        patch_size: Patch (HiViT: mask-unit) size.
    """

    parameters: int
    encoder_parameters: int
    forward_flops: int
    img_size: int
    in_chans: int
    patch_size: int


#: Measured with :func:`measure_preset` (regenerate with ``ssl-mae presets --measure``).
PRESET_FACTS: dict[str, PresetFacts] = {
    "mae_vit_micro_patch4": PresetFacts(312976, 204416, 16702464, 28, 1, 4),
    "mae_vit_micro_patch7": PresetFacts(914737, 802048, 11788800, 28, 1, 7),
    "mae_vit_tiny_patch4": PresetFacts(6178448, 5351808, 224480256, 28, 1, 4),
    "mae_vit_base_patch16": PresetFacts(111907840, 85798656, 19561480192, 224, 3, 16),
    "mae_vit_large_patch16": PresetFacts(329541888, 303301632, 41510780928, 224, 3, 16),
    "mae_vit_huge_patch14": PresetFacts(657074508, 630764800, 97123221504, 224, 3, 14),
    "mae_hivit_t": PresetFacts(38359456, 18752160, 10248698880, 224, 3, 16),
    "mae_hivit_s": PresetFacts(56660512, 37053216, 12366477312, 224, 3, 16),
    "mae_hivit_b": PresetFacts(98070656, 78397824, 16941826048, 224, 3, 16),
    "mae_hivit_b20": PresetFacts(85461120, 65788288, 15689031680, 224, 3, 16),
    "mae_hivit_l": PresetFacts(309395776, 289591872, 39167385600, 224, 3, 16),
    "mae_hivit_nano": PresetFacts(1016936, 508008, 5522944, 32, 3, 16),
    "simple_mae_vit_micro": PresetFacts(312976, 204416, 16702464, 28, 1, 4),
    "simple_mae_vit_tiny": PresetFacts(6178448, 5351808, 224480256, 28, 1, 4),
    "simple_mae_torchvision_vit_tiny": PresetFacts(6371448, 5544808, 224480256, 28, 1, 4),
    "mae_vit_micro_patch7_dec1": PresetFacts(864753, 802048, 10043648, 28, 1, 7),
    "mae_crossmae_micro_patch7": PresetFacts(915249, 802048, 8961920, 28, 1, 7),
    "mae_hog_micro_patch7": PresetFacts(912137, 802048, 11706880, 28, 1, 7),
    "mae_pixio_micro_patch4": PresetFacts(860080, 802816, 32720384, 28, 1, 4),
    "mae_crossmae_base_patch16": PresetFacts(111916032, 85798656, 10886889472, 224, 3, 16),
}  # fmt: skip


def measure_preset(name: str) -> PresetFacts:
    """Builds a preset on the ``meta`` device and counts its parameters and one step's FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ssl_mae.core import as_masked_autoencoder
    from ssl_mae.models.presets import build_model

    with torch.device("meta"):
        model = build_model(name)
    core = as_masked_autoencoder(model)
    height, width = core.image_size
    in_chans = int(core.encoder.in_chans)
    grid = core.encoder.grid_size
    images = torch.zeros(1, in_chans, height, width, device="meta")
    noise = torch.zeros(1, grid[0] * grid[1], device="meta")
    with FlopCounterMode(display=False) as counter:
        core(images, noise=noise)
    return PresetFacts(
        parameters=sum(p.numel() for p in model.parameters()),
        encoder_parameters=sum(p.numel() for p in core.encoder.parameters()),
        forward_flops=int(counter.get_total_flops()),
        img_size=int(height),
        in_chans=in_chans,
        patch_size=int(core.encoder.patch_size),
    )


def add_parser(subparsers: Any) -> None:
    """Adds ``presets``."""
    parser = subparsers.add_parser(
        "presets",
        help="list every preset: parameters, FLOPs per image, native size, defaults, use",
        description="List the model presets of 'ssl-mae pretrain --preset': parameters (all and "
        "encoder), forward GFLOPs of one image's MAE step (a training step costs about 3x), "
        "native input, the training defaults derived from the preset (base lr per 256 images, "
        "smallest crop area) and what the preset is for.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: table)"
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="recompute parameters and FLOPs by building every preset on the meta device "
        "(slow) instead of using the stored table",
    )
    parser.set_defaults(func=run)


def _rows(measure: bool) -> list[dict[str, Any]]:
    from ssl_mae.cli.defaults import preset_defaults
    from ssl_mae.models.presets import PRESET_FAMILIES, PRETRAIN_PRESETS

    rows = []
    names = [n for n in PRETRAIN_PRESETS if not n.endswith("_dec512d8b")]
    order = {family: i for i, family in enumerate(PRESET_FAMILIES)}
    for name in sorted(names, key=lambda n: order[PRETRAIN_PRESETS[n].family]):
        preset = PRETRAIN_PRESETS[name]
        facts = measure_preset(name) if measure else PRESET_FACTS[name]
        recipe = preset_defaults(name)
        rows.append(
            {
                "name": name,
                "family": preset.family,
                **asdict(facts),
                "base_lr": recipe.base_lr,
                "min_scale": recipe.min_scale,
                "use": preset.description,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    """``ssl-mae presets``."""
    rows = _rows(args.measure)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("preset", "params", "encoder", "GFLOPs/img", "input", "patch", "base_lr", "min_scale")
    table = [
        (
            row["name"],
            f"{row['parameters'] / 1e6:.1f}M",
            f"{row['encoder_parameters'] / 1e6:.1f}M",
            f"{row['forward_flops'] / 1e9:.3g}",
            f"{row['in_chans']}x{row['img_size']}x{row['img_size']}",
            str(row["patch_size"]),
            f"{row['base_lr']:g}",
            f"{row['min_scale']:g}",
        )
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in (header, *table)) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row, full in zip(table, rows, strict=True):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + f"  {full['use']}")
    print(
        "\nGFLOPs/img: forward pass of one image's MAE step at mask ratio 0.75 (a training step "
        "is about 3x). base_lr: peak lr per 256 images (lr = base_lr * batch / 256); min_scale: "
        "smallest crop area. Every default can be overridden on the command line."
    )
    return 0
