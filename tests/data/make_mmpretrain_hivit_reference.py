"""Writes tests/data/mmpretrain_hivit_reference.pt: mmpretrain's own ``MAEHiViT`` outputs.

The parity test loads these weights into ``ssl_mae``'s ``MAEHiViT`` with ``load_state_dict``,
feeds the same images and the same kept-unit ids, and compares the latents, so CI never needs
mmpretrain. This script uses only mmpretrain and torch (no ``ssl_mae``).

Made with (CPU, fp32): Python 3.11, torch 2.14.1, mmpretrain 1.2.0, mmengine 0.10.7,
mmcv-lite 2.2.0, numpy 2.4.6, in a separate virtual environment:

    python3 -m venv /tmp/mmvenv
    /tmp/mmvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31 numpy \
        mmengine==0.10.7 mmcv-lite==2.2.0 mmpretrain==1.2.0
    /tmp/mmvenv/bin/python tests/data/make_mmpretrain_hivit_reference.py

mmpretrain 1.2.0 imports with mmcv-lite as it is (it only warns that mmcv's compiled
``MultiScaleDeformableAttention`` is missing); no patch to mmpretrain was needed.

What the file holds (a dict):

- ``versions``: the package versions above, read at run time.
- ``config``: the keyword arguments of ``MAEHiViT`` (``rpe`` is set per case).
- ``state_dict``: backbone weights of the ``rpe=True`` model (mmpretrain key names). The
  ``rpe=False`` model is the same weights without the ``relative_position_*`` keys. Weights are
  rounded to float16 values before anything is computed and stored as float16, the integer
  ``relative_position_index`` buffers as int16: ``load_state_dict`` copies them into a model's
  float32 / int64 tensors exactly (small file, exact inputs).
- ``images``: (2, 3, 64, 64) uint8 codes; the float32 images mmpretrain saw are
  ``(images.float() - 128) / 64`` (exact).
- ``noise`` (B, L): the uniform noise mmpretrain's ``masking_id`` drew (seeded).
- ``ids_keep``, ``ids_restore``, ``mask``: what ``masking_id`` made of it, in its
  definitions: ``ids_keep`` (B, L_keep) are the kept units in ascending-noise order,
  ``ids_restore`` (B, L) undoes ``cat(kept, removed)``, ``mask`` (B, L) is 1 for removed units.
- ``masked_pos_embed``: the table mmpretrain's masked forward adds (before gathering at
  ``ids_keep``); it is not ``pos_embed``, see below.
- ``outputs``: for ``'rpe_false'`` and ``'rpe_true'``, ``latent`` (B, L_keep, C),
  ``mask``, ``ids_restore`` from ``forward(images, mask=True)`` and ``features`` (B, C, h, w)
  from ``forward(images, mask=None)`` (mmpretrain's last-block feature map).

Notes on mmpretrain 1.2.0 behaviour that the reference captures:

- Masked ``forward`` calls ``interpolate_pos_encoding(x, H, W)`` on the *kept* tokens. Their
  count differs from ``num_patches``, so the table is always bicubically resampled with
  ``scale_factor = (H / patch + 0.1) / sqrt(N)``: the added position embedding is not
  ``pos_embed`` (``masked_pos_embed`` holds what is added).
- Masked ``forward`` calls the main blocks without ``rpe_index``: ``rpe=True`` has no effect on
  the masked latent (``ssl_mae`` deliberately applies the kept units' bias there).
- ``HiViT.forward`` checks ``out_indices`` (whose last entry it sets to ``depths[-1] - 1``)
  against the *stem* block indices too and, on a hit, replaces the stem tokens with a feature
  map. The main depth (7) is chosen so that index 6 is past the 6 stem modules of
  ``depths[:2] == [1, 1]``.
"""

from __future__ import annotations

import importlib.metadata
import platform
import warnings
from pathlib import Path

import torch

OUT = Path(__file__).with_name("mmpretrain_hivit_reference.pt")

CONFIG = {
    "arch": {"embed_dims": 32, "depths": [1, 1, 7], "num_heads": 2},
    "img_size": 64,
    "patch_size": 16,
    "inner_patches": 4,
    "out_indices": [6],
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "norm_cfg": {"type": "LN", "eps": 1e-6},
    "ape": True,
    "layer_scale_init_value": 0.0,
    "mask_ratio": 0.75,
}
BATCH = 2


def _versions() -> dict[str, str]:
    names = ("torch", "mmpretrain", "mmengine", "mmcv-lite", "numpy")
    found = {name: importlib.metadata.version(name) for name in names}
    found["python"] = platform.python_version()
    return found


def _build(rpe: bool) -> torch.nn.Module:
    from mmpretrain.models.selfsup.mae import MAEHiViT

    # mmpretrain mutates out_indices and arch lists in place: pass fresh copies.
    arch = {**CONFIG["arch"], "depths": list(CONFIG["arch"]["depths"])}
    kwargs = {**CONFIG, "arch": arch, "out_indices": list(CONFIG["out_indices"])}
    kwargs["norm_cfg"] = dict(CONFIG["norm_cfg"])
    model = MAEHiViT(rpe=rpe, **kwargs)
    model.init_weights()  # sine-cosine pos_embed, Xavier patch projection (mmpretrain's MAE init)
    return model


def main() -> None:
    warnings.filterwarnings("ignore", message="Fail to import ``MultiScaleDeformableAttention``")
    torch.manual_seed(0)
    reference = _build(rpe=True)
    with torch.no_grad():
        # Move LayerNorm affines and biases off their 1/0 init so every parameter matters, then
        # round every weight to a float16 value (stored as float16, exact in float32).
        for name, param in reference.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
            param.copy_(param.half().float())
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    size = CONFIG["img_size"]
    codes = torch.randint(0, 256, (BATCH, 3, size, size)).to(torch.uint8)
    images = (codes.float() - 128) / 64

    # masking_id draws torch.rand(B, L) internally: record that noise by replaying the seed.
    torch.manual_seed(1)
    noise = torch.rand(BATCH, reference.num_patches)
    torch.manual_seed(1)
    ids_keep, ids_restore, mask = reference.masking_id(BATCH, CONFIG["mask_ratio"])
    assert torch.equal(ids_keep, noise.argsort(dim=1)[:, : ids_keep.shape[1]])

    outputs = {}
    masked_pos_embed = None
    for rpe in (False, True):
        model = _build(rpe=rpe)
        weights = state if rpe else {k: v for k, v in state.items() if "relative_position" not in k}
        model.load_state_dict(weights, strict=True)
        model.eval()
        # Drive mmpretrain's masked forward with the recorded ids instead of fresh noise.
        model.masking_id = lambda batch_size, mask_ratio: (ids_keep, ids_restore, mask)
        with torch.no_grad():
            latent, out_mask, out_restore = model(images, mask=True)
            (features,) = model(images, mask=None)
            kept = torch.zeros(BATCH, ids_keep.shape[1], model.embed_dims)
            table = model.interpolate_pos_encoding(kept, *images.shape[-2:])
        assert torch.equal(out_mask, mask) and torch.equal(out_restore, ids_restore)
        if masked_pos_embed is None:
            masked_pos_embed = table.clone()
        outputs[f"rpe_{str(rpe).lower()}"] = {
            "latent": latent.clone(),
            "mask": out_mask.clone(),
            "ids_restore": out_restore.clone(),
            "features": features.clone(),
        }

    torch.save(
        {
            "versions": _versions(),
            "config": CONFIG,
            "state_dict": {
                k: v.half() if v.is_floating_point() else v.to(torch.int16)
                for k, v in state.items()
            },
            "images": codes,
            "noise": noise,
            "ids_keep": ids_keep,
            "ids_restore": ids_restore,
            "mask": mask,
            "masked_pos_embed": masked_pos_embed,
            "outputs": outputs,
        },
        OUT,
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
