"""HiViT, the hierarchical vision transformer made for masked image modelling.

HiViT ("HiViT: A Simpler and More Efficient Design of Hierarchical Vision Transformer",
Zhang et al., ICLR 2023, arXiv 2205.14949) keeps the multi-scale stem of Swin but removes
every operation that mixes information *between* 16×16 mask units before the last stage:

```
images (B, C, H, W)
  └─ HiViTPatchEmbed: 4×4 conv patches, grouped per 16×16 unit → (B, N, 4, 4, C/4)
      └─ [MAE only] keep the visible units                       → (B, N_keep, 4, 4, C/4)
          └─ stage 1: MLP blocks at 4×4 inside each unit, PatchMerge → (B, N', 2, 2, C/2)
              └─ stage 2: MLP blocks at 2×2 inside each unit, PatchMerge → (B, N', 1, 1, C)
                  └─ + absolute position embedding (ape)
                      └─ main stage: transformer blocks over the unit tokens → (B, N', C)
```

Because the stem never looks across unit borders, a masked autoencoder can drop the masked
units *before* the stem, exactly as a plain ViT drops masked patches; this is where HiViT's
pre-training speed comes from. The module layout and parameter names follow mmpretrain's
``HiViT`` / ``MAEHiViT`` so that its checkpoints load with ``load_state_dict``.

Public names: :data:`HIVIT_ARCHS`, :class:`HiViTPatchEmbed`, :class:`PatchMerge`,
:class:`HiViTAttention`, :class:`HiViTBlock`, :class:`HiViT` and :class:`MAEHiViT`; the MAE
pretrainer is in :mod:`ssl_mae.models.hivit.pretraining`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers.drop import DropPath
from torch import Tensor, nn

from ssl_mae._validation import (
    check_bool,
    check_float,
    check_index,
    check_mask_ratio,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_tensor,
    to_2tuple,
)
from ssl_mae.masking import official_masks, random_grid_mask
from ssl_mae.modules.init import init_patch_projection
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed

__all__ = [
    "HIVIT_ARCHS",
    "HiViT",
    "HiViTAttention",
    "HiViTBlock",
    "HiViTPatchEmbed",
    "MAEHiViT",
    "PatchMerge",
]

_ARCH_KEYS = frozenset({"embed_dims", "depths", "num_heads"})


def _arch(embed_dims: int, depths: tuple[int, ...], num_heads: int) -> Mapping[str, Any]:
    return MappingProxyType({"embed_dims": embed_dims, "depths": depths, "num_heads": num_heads})


#: Architectures by name (mmpretrain's table). ``embed_dims`` is the width of the main stage;
#: the stem stages run at ``embed_dims / 4`` and ``embed_dims / 2``. ``depths`` counts stem
#: stages in pairs of MLP blocks (mmpretrain's convention: depth 2 builds 4 MLP blocks) and the
#: main stage in transformer blocks. ``b20`` is the HiViT paper's base model (≈66M parameters);
#: mmpretrain's ``b`` has 24 main blocks.
HIVIT_ARCHS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        **dict.fromkeys(("t", "tiny"), _arch(384, (1, 1, 10), 6)),
        **dict.fromkeys(("s", "small"), _arch(384, (2, 2, 20), 6)),
        **dict.fromkeys(("b", "base"), _arch(512, (2, 2, 24), 8)),
        "b20": _arch(512, (2, 2, 20), 8),
        **dict.fromkeys(("l", "large"), _arch(768, (2, 2, 40), 12)),
    }
)

_DEFAULT_NORM_CFG: Mapping[str, Any] = MappingProxyType({"type": "LN", "eps": 1e-6})


def _resolve_arch(arch: str | Mapping[str, Any]) -> tuple[int, tuple[int, ...], int]:
    """Returns ``(embed_dims, depths, num_heads)`` for an arch name or a custom dict."""
    if isinstance(arch, str):
        settings = HIVIT_ARCHS.get(arch.lower())
        if settings is None:
            raise ValueError(
                f"arch must be one of {sorted(HIVIT_ARCHS)} or a dict with keys "
                f"{sorted(_ARCH_KEYS)}, got {arch!r}"
            )
    elif isinstance(arch, Mapping):
        if set(arch) != _ARCH_KEYS:
            raise ValueError(
                f"a custom arch dict must have exactly the keys {sorted(_ARCH_KEYS)}, "
                f"got keys {sorted(arch)}"
            )
        settings = arch
    else:
        raise TypeError(f"arch must be a str or a dict, got {type(arch).__name__}")
    embed_dims = check_positive_int(settings["embed_dims"], "arch['embed_dims']")
    num_heads = check_positive_int(settings["num_heads"], "arch['num_heads']")
    raw_depths = settings["depths"]
    if not isinstance(raw_depths, Sequence) or isinstance(raw_depths, str) or not raw_depths:
        raise TypeError(f"arch['depths'] must be a non-empty sequence of ints, got {raw_depths!r}")
    depths = tuple(check_positive_int(d, "arch['depths'] entries") for d in raw_depths)
    stem_factor = 2 ** (len(depths) - 1)
    if embed_dims % stem_factor != 0:
        raise ValueError(
            f"arch['embed_dims'] must be divisible by 2**(len(depths) - 1) = {stem_factor} so that "
            f"every stage has an integer width, got {embed_dims}"
        )
    if embed_dims % num_heads != 0:
        raise ValueError(
            f"arch['embed_dims'] ({embed_dims}) must be divisible by arch['num_heads'], "
            f"got {num_heads}"
        )
    return embed_dims, depths, num_heads


def _build_norm(norm_cfg: Mapping[str, Any], dim: int) -> nn.LayerNorm:
    """Builds the normalisation layer described by an mmpretrain-style ``norm_cfg``."""
    if not isinstance(norm_cfg, Mapping):
        raise TypeError(f"norm_cfg must be a dict such as {{'type': 'LN'}}, got {norm_cfg!r}")
    unknown = set(norm_cfg) - {"type", "eps"}
    if unknown or norm_cfg.get("type") != "LN":
        raise ValueError(
            f"norm_cfg must be {{'type': 'LN'}} with an optional 'eps', got {dict(norm_cfg)!r}"
        )
    return nn.LayerNorm(dim, eps=check_positive_float(norm_cfg.get("eps", 1e-5), "norm_cfg['eps']"))


def _relative_position_index(grid: tuple[int, int]) -> Tensor:
    """Index into a ``(2H-1)(2W-1)`` bias table for every (query, key) pair of an H×W grid.

    Returns:
        Long tensor of shape (H*W, H*W); tokens are in row-major order.
    """
    height, width = grid
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack((rows.flatten(), cols.flatten()))  # (2, L)
    delta = coords[:, :, None] - coords[:, None, :]  # (2, L, L), each in [-(n-1), n-1]
    return (delta[0] + height - 1) * (2 * width - 1) + (delta[1] + width - 1)


def _mmpretrain_resample_pos_embed(
    pos_embed: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> Tensor:
    """Bicubic resize of a ``(1, h*w, D)`` table exactly as mmpretrain's ``HiViT`` does it.

    mmpretrain's ``HiViT.interpolate_pos_encoding`` calls ``F.interpolate`` with
    ``scale_factor = (new + 0.1) / old`` (the DINO trick) instead of a target size, so even
    ``new_grid == old_grid`` does not return the table unchanged: the sample points move by
    ``old / (old + 0.1)`` and the values are resampled.

    Returns:
        (1, new_h * new_w, D).
    """
    (old_h, old_w), (new_h, new_w) = old_grid, new_grid
    dim = pos_embed.shape[-1]
    table = pos_embed.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)
    table = F.interpolate(
        table, scale_factor=((new_h + 0.1) / old_h, (new_w + 0.1) / old_w), mode="bicubic"
    )
    return table.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim)


class _Mlp(nn.Module):
    """Two-layer perceptron with GELU; dropout after the output like mmpretrain's ``Mlp``."""

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.drop(self.fc2(self.act(self.fc1(x))))
        return out


class HiViTPatchEmbed(nn.Module):
    """Embeds 4×4-pixel patches and groups them by 16×16 mask unit.

    Args:
        img_size: Training image size, an int or ``(height, width)``; only sets ``num_patches``
            and ``patches_resolution`` (other sizes are accepted by ``forward``).
        patch_size: Side of a mask unit in pixels (16): one main-stage token per unit.
        inner_patches: Patches per unit side (4): the stem runs at this resolution.
        in_chans: Number of image channels.
        embed_dim: Width of the first stem stage.
        norm_layer: Optional normalisation applied to every patch embedding.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        in_chans: int = 3,
        embed_dim: int = 128,
        norm_layer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        img_hw = to_2tuple(img_size, "img_size")
        check_positive_int(patch_size, "patch_size")
        check_positive_int(inner_patches, "inner_patches")
        if patch_size % inner_patches != 0:
            raise ValueError(
                f"patch_size must be divisible by inner_patches ({inner_patches}), got {patch_size}"
            )
        for side in img_hw:
            if side % patch_size != 0:
                raise ValueError(
                    f"img_size must be a multiple of patch_size ({patch_size}) for HiViT, "
                    f"got {img_size!r}"
                )
        self.img_size = img_hw
        self.patch_size = patch_size
        self.inner_patches = inner_patches
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self.embed_dim = embed_dim
        self.patches_resolution = (img_hw[0] // patch_size, img_hw[1] // patch_size)
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        stride = patch_size // inner_patches
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=stride, stride=stride)
        self.norm = norm_layer

    def grid_size(self, images: Tensor) -> tuple[int, int]:
        """Validates ``images: (B, C, H, W)`` and returns its unit grid ``(H/16, W/16)``."""
        check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)", floating=True)
        _, channels, height, width = images.shape
        if channels != self.in_chans:
            raise ValueError(
                f"images must have {self.in_chans} channels (in_chans), got shape "
                f"{tuple(images.shape)}"
            )
        if height % self.patch_size != 0 or width % self.patch_size != 0:
            raise ValueError(
                f"images height and width must be multiples of patch_size ({self.patch_size}) "
                f"for HiViT, got {height}×{width}"
            )
        return height // self.patch_size, width // self.patch_size

    def forward(self, images: Tensor) -> Tensor:
        """Embeds the image.

        Args:
            images: (B, C, H, W) with H and W multiples of ``patch_size``.

        Returns:
            (B, N, inner, inner, D): N = (H/16)(W/16) units in row-major order, each holding its
            ``inner × inner`` grid of patch embeddings.
        """
        grid_h, grid_w = self.grid_size(images)
        inner = self.inner_patches
        x: Tensor = self.proj(images)  # (B, D, H/4, W/4)
        batch, dim = x.shape[:2]
        x = x.view(batch, dim, grid_h, inner, grid_w, inner)
        x = x.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid_h * grid_w, inner, inner, dim)
        if self.norm is not None:
            x = self.norm(x)
        return x


class PatchMerge(nn.Module):
    """Merges each 2×2 group of patches inside a mask unit, doubling the width.

    The four neighbours are concatenated in mmpretrain's order (top-left, bottom-left,
    top-right, bottom-right) so that its ``reduction`` weights load unchanged.

    Args:
        dim: Input width D.
        norm_layer: Normalisation over the concatenated ``4 D`` features.
    """

    def __init__(self, dim: int, norm_layer: nn.Module) -> None:
        super().__init__()
        self.norm = norm_layer
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Merges patches.

        Args:
            x: (B, N, S, S, D) with S even.

        Returns:
            (B, N, S/2, S/2, 2D).
        """
        batch, units, side, _, dim = x.shape
        half = side // 2
        x = x.view(batch, units, half, 2, half, 2, dim)  # (.., i, row parity, j, col parity, D)
        # column parity outer, row parity inner → (0,0), (1,0), (0,1), (1,1)
        x = x.permute(0, 1, 2, 4, 5, 3, 6).reshape(batch, units, half, half, 4 * dim)
        out: Tensor = self.reduction(self.norm(x))
        return out


class HiViTAttention(nn.Module):
    """Multi-head self-attention with an optional relative position bias.

    Args:
        dim: Token width.
        num_heads: Number of heads.
        rpe_grid: ``(H, W)`` token grid for a learned relative position bias table, or ``None``
            for no bias.
        qkv_bias: Add a bias to the query/key/value projection.
        qk_scale: Attention scale; ``None`` means ``head_dim ** -0.5``.
        attn_drop: Dropout on the attention weights.
        proj_drop: Dropout after the output projection.
    """

    relative_position_index: Tensor

    def __init__(
        self,
        dim: int,
        num_heads: int,
        rpe_grid: tuple[int, int] | None = None,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table: nn.Parameter | None = None
        if rpe_grid is not None:
            height, width = rpe_grid
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * height - 1) * (2 * width - 1), num_heads)
            )
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", _relative_position_index(rpe_grid))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self, ids_keep: Tensor | None = None) -> Tensor | None:
        """Bias added to the attention logits, restricted to the kept tokens.

        Args:
            ids_keep: (B, K) indices of the tokens present in the sequence, or ``None`` for all.

        Returns:
            (1, heads, L, L) or (B, heads, K, K), or ``None`` when the layer has no bias table.
        """
        table = self.relative_position_bias_table
        if table is None:
            return None
        index = self.relative_position_index
        if ids_keep is None:
            return table[index].permute(2, 0, 1).unsqueeze(0)
        index = index[ids_keep[:, :, None], ids_keep[:, None, :]]  # (B, K, K)
        return table[index].permute(0, 3, 1, 2)

    def forward(self, x: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Attends over the tokens.

        Args:
            x: (B, K, D) tokens.
            ids_keep: (B, K) grid positions of the tokens (only used by the position bias).

        Returns:
            (B, K, D).
        """
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias(ids_keep)
        if bias is not None:
            bias = bias.to(q.dtype)  # SDPA needs the mask in the query dtype under autocast
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out: Tensor = self.proj_drop(self.proj(x.transpose(1, 2).reshape(batch, length, dim)))
        return out


class HiViTBlock(nn.Module):
    """A HiViT block: attention + MLP in the main stage, MLP only in the stem.

    Args:
        dim: Token width.
        num_heads: Attention heads; 0 builds an MLP-only stem block.
        mlp_ratio: Hidden width of the MLP relative to ``dim``.
        rpe_grid: Token grid for a relative position bias, or ``None``.
        qkv_bias: Bias on the query/key/value projection.
        qk_scale: Attention scale override.
        drop: Dropout after the attention projection and the MLP.
        attn_drop: Dropout on attention weights.
        drop_path: Stochastic depth rate of both residual branches.
        layer_scale_init_value: Initial per-channel residual scale; 0 disables layer scale.
        norm_cfg: Normalisation config, ``{'type': 'LN', 'eps': ...}``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 0,
        mlp_ratio: float = 4.0,
        rpe_grid: tuple[int, int] | None = None,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 0.0,
        norm_cfg: Mapping[str, Any] = _DEFAULT_NORM_CFG,
    ) -> None:
        super().__init__()
        with_attn = num_heads > 0
        self.norm1 = _build_norm(norm_cfg, dim) if with_attn else None
        self.attn = (
            HiViTAttention(dim, num_heads, rpe_grid, qkv_bias, qk_scale, attn_drop, drop)
            if with_attn
            else None
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = _build_norm(norm_cfg, dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1: nn.Parameter | None = None
        self.gamma_2: nn.Parameter | None = None
        if layer_scale_init_value > 0:
            if with_attn:
                self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale_init_value))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale_init_value))

    def forward(self, x: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Applies the block.

        Args:
            x: (B, K, D) main-stage tokens or (B, K, S, S, D) stem patches (MLP-only blocks).
            ids_keep: (B, K) grid positions of the tokens, for the relative position bias.

        Returns:
            Same shape as ``x``.
        """
        if self.attn is not None and self.norm1 is not None:
            branch = self.attn(self.norm1(x), ids_keep)
            if self.gamma_1 is not None:
                branch = self.gamma_1 * branch
            x = x + self.drop_path(branch)
        branch = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            branch = self.gamma_2 * branch
        out: Tensor = x + self.drop_path(branch)
        return out


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _load_pretrained(model: nn.Module, init_cfg: Mapping[str, Any]) -> None:
    """Loads ``init_cfg = {'type': 'Pretrained', 'checkpoint': path, 'prefix': ...}``."""
    if init_cfg.get("type") != "Pretrained" or "checkpoint" not in init_cfg:
        raise ValueError(
            "init_cfg must be None or {'type': 'Pretrained', 'checkpoint': <path>, "
            f"'prefix': <optional key prefix such as 'backbone.'>}}, got {dict(init_cfg)!r}"
        )
    state = torch.load(init_cfg["checkpoint"], map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]  # mmengine checkpoints wrap the weights
    prefix = str(init_cfg.get("prefix", ""))
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(state)


class HiViT(nn.Module):
    """The HiViT backbone (mmpretrain-compatible parameter names).

    Args:
        arch: One of :data:`HIVIT_ARCHS` (``'t'``, ``'s'``, ``'b'``, ``'b20'``, ``'l'`` or the
            long names) or a dict with keys ``embed_dims``, ``depths``, ``num_heads``.
        img_size: Training image size (int or ``(height, width)``), a multiple of ``patch_size``.
        patch_size: Mask-unit size in pixels: one main-stage token per unit.
        inner_patches: Stem patches per unit side; must be ``2 ** (len(depths) - 1)``.
        in_chans: Number of image channels.
        stem_mlp_ratio: MLP ratio of the stem blocks.
        mlp_ratio: MLP ratio of the main-stage blocks.
        qkv_bias: Bias on the query/key/value projections.
        qk_scale: Attention scale override.
        drop_rate: Dropout after the position embedding, attention projection and MLPs.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks (stem included).
        norm_cfg: ``{'type': 'LN', 'eps': ...}``.
        out_indices: Main-stage block indices whose outputs :meth:`forward` returns as feature
            maps; negative values count from the end. Stem blocks are never selected. As in
            mmpretrain, the last entry always denotes the final block, so the default ``(23,)``
            means "the last block" for every arch.
        ape: Add an absolute position embedding before the main stage.
        rpe: Add a learned relative position bias in every main-stage attention.
        patch_norm: Normalise the patch embeddings.
        layer_scale_init_value: Initial layer-scale value; 0 disables layer scale.
        init_cfg: ``None``, or ``{'type': 'Pretrained', 'checkpoint': path, 'prefix': p}`` to
            load weights after initialisation (mmengine checkpoints are unwrapped).
    """

    num_prefix_tokens = 0
    relative_position_index: Tensor

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "b",
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        in_chans: int = 3,
        stem_mlp_ratio: float = 3.0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: Mapping[str, Any] = _DEFAULT_NORM_CFG,
        out_indices: int | Sequence[int] = (23,),
        ape: bool = True,
        rpe: bool = False,
        patch_norm: bool = True,
        layer_scale_init_value: float = 0.0,
        init_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.embed_dims, self.depths, self.num_heads = _resolve_arch(arch)
        num_stages = len(self.depths)
        if inner_patches != 2 ** (num_stages - 1):
            raise ValueError(
                f"inner_patches must be 2 ** (len(depths) - 1) = {2 ** (num_stages - 1)} so that "
                f"the stem merges each unit down to one token, got {inner_patches}"
            )
        for name, rate in (
            ("drop_rate", drop_rate),
            ("attn_drop_rate", attn_drop_rate),
            ("drop_path_rate", drop_path_rate),
        ):
            check_float(rate, name, 0.0, 1.0, high_open=True)
        check_positive_float(stem_mlp_ratio, "stem_mlp_ratio")
        check_positive_float(mlp_ratio, "mlp_ratio")
        check_nonnegative_float(layer_scale_init_value, "layer_scale_init_value")
        if qk_scale is not None:
            check_positive_float(qk_scale, "qk_scale")
        for flag, flag_name in (
            (qkv_bias, "qkv_bias"),
            (ape, "ape"),
            (rpe, "rpe"),
            (patch_norm, "patch_norm"),
        ):
            check_bool(flag, flag_name)
        self.num_features = self.embed_dims
        self.num_main_blocks = self.depths[-1]
        self.out_indices = self._resolve_out_indices(out_indices, self.num_main_blocks)
        self.ape = ape
        self.rpe = rpe
        self.patch_size = patch_size

        stem_dim = self.embed_dims // 2 ** (num_stages - 1)
        self.patch_embed = HiViTPatchEmbed(
            img_size,
            patch_size,
            inner_patches,
            in_chans,
            stem_dim,
            _build_norm(norm_cfg, stem_dim) if patch_norm else None,
        )
        self.num_patches = self.patch_embed.num_patches
        grid = self.patch_embed.patches_resolution
        if ape:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, self.embed_dims))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_parameter("pos_embed", None)
        if rpe:
            # Unused by the computation (each attention owns a copy) but part of mmpretrain's
            # state dict, so kept for strict checkpoint loading.
            self.register_buffer("relative_position_index", _relative_position_index(grid))
        self.pos_drop = nn.Dropout(drop_rate)

        # Stem stages count their depth in pairs of MLP blocks (mmpretrain's convention).
        block_counts = [2 * d for d in self.depths[:-1]] + [self.depths[-1]]
        total = sum(block_counts)
        drop_paths = iter(drop_path_rate * i / max(total - 1, 1) for i in range(total))
        self.blocks = nn.ModuleList()
        dim = stem_dim
        for stage, count in enumerate(block_counts):
            is_main = stage == num_stages - 1
            for _ in range(count):
                self.blocks.append(
                    HiViTBlock(
                        dim,
                        num_heads=self.num_heads if is_main else 0,
                        mlp_ratio=mlp_ratio if is_main else stem_mlp_ratio,
                        rpe_grid=grid if (rpe and is_main) else None,
                        qkv_bias=qkv_bias,
                        qk_scale=qk_scale,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=next(drop_paths),
                        layer_scale_init_value=layer_scale_init_value,
                        norm_cfg=norm_cfg,
                    )
                )
            if not is_main:
                self.blocks.append(PatchMerge(dim, _build_norm(norm_cfg, 4 * dim)))
                dim *= 2
        self.init_weights()
        if init_cfg is not None:
            _load_pretrained(self, init_cfg)

    @staticmethod
    def _resolve_out_indices(out_indices: int | Sequence[int], depth: int) -> tuple[int, ...]:
        if isinstance(out_indices, int) and not isinstance(out_indices, bool):
            out_indices = (out_indices,)
        if (
            isinstance(out_indices, str)
            or not isinstance(out_indices, Sequence)
            or not out_indices
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in out_indices)
        ):
            raise TypeError(
                f"out_indices must be an int or a non-empty list of ints, got {out_indices!r}"
            )
        resolved = []
        for index in out_indices[:-1]:
            if not -depth <= index < depth:
                raise ValueError(
                    f"out_indices entries must index the {depth} main-stage blocks, i.e. lie in "
                    f"[{-depth}, {depth - 1}], got {index} in {list(out_indices)!r}"
                )
            resolved.append(index % depth)
        resolved.append(depth - 1)
        return tuple(sorted(set(resolved)))

    def init_weights(self) -> None:
        """Truncated-normal linear layers, unit LayerNorms (mmpretrain's HiViT init)."""
        self.apply(_init_linear_and_norm)

    @property
    def stem_blocks(self) -> nn.ModuleList:
        """MLP blocks and patch merges that run inside each mask unit."""
        return self.blocks[: len(self.blocks) - self.num_main_blocks]

    @property
    def main_blocks(self) -> nn.ModuleList:
        """Transformer blocks over the unit tokens."""
        return self.blocks[len(self.blocks) - self.num_main_blocks :]

    def position_embedding(self, grid: tuple[int, int]) -> Tensor:
        """Absolute position embedding for a unit grid, interpolated if it is not the trained one.

        Args:
            grid: ``(H/16, W/16)``.

        Returns:
            (1, grid_h * grid_w, D).
        """
        if self.pos_embed is None:
            raise RuntimeError("this HiViT was built with ape=False and has no pos_embed")
        if grid == self.patch_embed.patches_resolution:
            return self.pos_embed
        return interpolate_pos_embed(
            self.pos_embed, grid, num_prefix_tokens=0, old_grid=self.patch_embed.patches_resolution
        )

    def _encode_position_embedding(self, grid: tuple[int, int], num_tokens: int) -> Tensor:
        """The (1, grid_h * grid_w, D) table :meth:`encode` adds, for ``num_tokens`` tokens."""
        return self.position_embedding(grid)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Mask-unit grid ``(H/16, W/16)`` at the training image size."""
        height, width = self.patch_embed.patches_resolution
        return int(height), int(width)

    @property
    def in_chans(self) -> int:
        """Image channels."""
        return int(self.patch_embed.in_chans)

    def encode(self, images: Tensor, *, idx_keep: Tensor | None = None) -> Tensor:
        """Encodes the mask units at ``idx_keep`` (all when None): the encoder protocol of
        :class:`~ssl_mae.MaskedAutoencoder` (HiViT has no prefix tokens, so positions are unit
        indices).

        Args:
            images: (B, C, H, W), H and W multiples of ``patch_size``.
            idx_keep: (B, K) row-major indices of the units to encode, or None for all.

        Returns:
            (B, K, D) final tokens in ``idx_keep`` order.
        """
        return self.encode_with_outputs(images, idx_keep)[0]

    def encode_with_outputs(
        self, images: Tensor, ids_keep: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Encodes the visible mask units of ``images``.

        Args:
            images: (B, C, H, W), H and W multiples of ``patch_size``.
            ids_keep: (B, K) row-major indices of the units to encode, or ``None`` for all. Only
                these units enter the network, so masked pixels cannot affect the output.

        Returns:
            ``(tokens, outputs)``: the final tokens (B, K, D) in ``ids_keep`` order, and the
            tokens (B, K, D) after each block in :attr:`out_indices`.
        """
        grid = self.patch_embed.grid_size(images)
        num_units = grid[0] * grid[1]
        if self.rpe and grid != self.patch_embed.patches_resolution:
            raise ValueError(
                f"images must be {self.patch_embed.img_size[0]}×{self.patch_embed.img_size[1]} "
                "when rpe=True (the relative position table is built for that grid), got "
                f"{images.shape[-2]}×{images.shape[-1]}"
            )
        x = self.patch_embed(images)  # (B, N, S, S, D)
        if ids_keep is not None:
            check_index(ids_keep, "ids_keep", num_units, images.shape[0])
            x = x.gather(1, ids_keep[:, :, None, None, None].expand(-1, -1, *x.shape[2:]))
        for block in self.stem_blocks:
            x = block(x)
        x = x[:, :, 0, 0, :]  # each unit is now a single token
        if self.pos_embed is not None:
            pos_embed = self._encode_position_embedding(grid, x.shape[1])
            pos_embed = pos_embed.expand(x.shape[0], -1, -1)
            if ids_keep is not None:
                pos_embed = pos_embed.gather(
                    1, ids_keep[:, :, None].expand(-1, -1, pos_embed.shape[-1])
                )
            x = x + pos_embed
        x = self.pos_drop(x)
        outputs = []
        for index, block in enumerate(self.main_blocks):
            x = block(x, ids_keep)
            if index in self.out_indices:
                outputs.append(x)
        return x, outputs

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Feature maps of the main-stage blocks in :attr:`out_indices` (mmpretrain semantics).

        Args:
            images: (B, C, H, W).

        Returns:
            One (B, D, H/16, W/16) tensor per entry of :attr:`out_indices`.
        """
        grid_h, grid_w = self.patch_embed.grid_size(images)
        _, outputs = self.encode_with_outputs(images)
        return tuple(
            out.transpose(1, 2).reshape(out.shape[0], -1, grid_h, grid_w) for out in outputs
        )


class MAEHiViT(HiViT):
    """HiViT encoder for MAE pre-training: encodes only the visible mask units.

    Signature and parameter names follow mmpretrain's ``MAEHiViT``; differences: no shared
    mutable defaults, ``mask=False`` really disables masking (mmpretrain's
    ``if mask is None or False`` masks on ``False``), the unmasked forward returns the token
    sequence rather than feature maps, and ``rpe=True`` applies the relative position bias of the
    kept tokens during masked encoding (mmpretrain silently drops it there).

    Like mmpretrain, masked encoding adds a *resampled* copy of ``pos_embed``: its forward calls
    ``interpolate_pos_encoding(x, H, W)`` on the kept tokens only, and because their count is
    not ``num_patches`` the table always goes through its bicubic ``scale_factor=(n + 0.1) / n``
    resize (see :meth:`_encode_position_embedding`). Reproducing it keeps mmpretrain checkpoints
    and this class numerically equal; the unmasked path and ``mask_ratio=0`` use the table as is.

    Args:
        arch: Architecture name or dict, see :class:`HiViT`.
        img_size: Training image size, a multiple of ``patch_size``.
        patch_size: Mask-unit size (16).
        inner_patches: Stem patches per unit side (4).
        out_indices: See :class:`HiViT` (used by :meth:`HiViT.forward` only).
        drop_rate: Dropout rate.
        drop_path_rate: Stochastic depth rate.
        norm_cfg: ``{'type': 'LN', 'eps': 1e-6}`` by default.
        ape: Absolute (fixed sine-cosine) position embedding.
        rpe: Relative position bias in the main stage.
        layer_scale_init_value: Layer-scale init; 0 disables it.
        mask_ratio: Fraction of mask units removed by ``forward(x, mask=True)``, in [0, 1).
        init_cfg: ``None`` or a ``'Pretrained'`` config, see :class:`HiViT`.
        in_chans: Number of image channels.
    """

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "b",
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        out_indices: int | Sequence[int] = (23,),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: Mapping[str, Any] = _DEFAULT_NORM_CFG,
        ape: bool = True,
        rpe: bool = False,
        layer_scale_init_value: float = 0.0,
        mask_ratio: float = 0.75,
        init_cfg: Mapping[str, Any] | None = None,
        in_chans: int = 3,
    ) -> None:
        self.mask_ratio = check_mask_ratio(mask_ratio)
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            inner_patches=inner_patches,
            in_chans=in_chans,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            out_indices=out_indices,
            ape=ape,
            rpe=rpe,
            layer_scale_init_value=layer_scale_init_value,
            init_cfg=init_cfg,
        )
        if self.pos_embed is not None:
            self.pos_embed.requires_grad_(False)  # fixed sine-cosine table, as in MAE

    def init_weights(self) -> None:
        """MAE init: sine-cosine ``pos_embed`` and a Xavier-uniform patch projection."""
        super().init_weights()
        if self.pos_embed is not None:
            table = get_2d_sincos_pos_embed(
                self.embed_dims, self.patch_embed.patches_resolution, num_prefix_tokens=0
            )
            with torch.no_grad():
                self.pos_embed.copy_(table.unsqueeze(0))
        init_patch_projection(self.patch_embed.proj.weight)

    def _encode_position_embedding(self, grid: tuple[int, int], num_tokens: int) -> Tensor:
        """mmpretrain's masked-path position table (see the class docstring).

        mmpretrain's ``MAEHiViT.forward`` (mask=True) passes the kept tokens to
        ``HiViT.interpolate_pos_encoding``, which returns ``pos_embed`` unchanged only when the
        token count equals ``num_patches`` (and the image is square); with fewer tokens it
        resamples the table to the same grid with a ``(n + 0.1) / n`` scale factor. The
        resampled table is then gathered at the kept units like the plain one.
        """
        trained = self.patch_embed.patches_resolution
        if self.pos_embed is not None and grid == trained and num_tokens != self.num_patches:
            return _mmpretrain_resample_pos_embed(self.pos_embed, trained, grid)
        return super()._encode_position_embedding(grid, num_tokens)

    def masking_id(
        self,
        batch_size: int,
        mask_ratio: float,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draws which mask units stay visible.

        Args:
            batch_size: Number of images B.
            mask_ratio: Fraction of units to remove, in [0, 1).
            noise: Optional (B, L) noise; the units with the smallest noise are kept, so the same
                noise gives the same mask.
            generator: Random generator used when ``noise`` is None.

        Returns:
            ``(ids_keep, ids_restore, mask)``: kept unit indices (B, L_keep) in ascending-noise
            order, ``ids_restore`` (B, L) that undoes ``cat(kept, removed)``, and the float mask
            (B, L) in row-major unit order with 1 for removed and 0 for kept units.
        """
        check_positive_int(batch_size, "batch_size")
        device = self.patch_embed.proj.weight.device
        ids_keep, ids_mask = random_grid_mask(
            batch_size,
            self.grid_size,
            0,
            mask_ratio,
            device=device,
            generator=generator,
            noise=noise,
        )
        mask, ids_restore = official_masks(ids_keep, ids_mask, num_prefix_tokens=0)
        return ids_keep, ids_restore, mask

    def forward(
        self,
        x: Tensor,
        mask: bool | None = True,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encodes the visible mask units (``mask=True``) or all of them.

        Args:
            x: Images (B, C, H, W) of the training size.
            mask: ``True`` masks ``mask_ratio`` of the units at random; ``None`` or ``False``
                encode every unit (then the returned mask is all zeros and ``ids_restore`` the
                identity, so a decoder can consume the result unchanged).
            noise: Optional (B, L) masking noise, see :meth:`masking_id`.
            generator: Optional random generator for the mask.

        Returns:
            ``(hidden, mask, ids_restore)``: hidden (B, L_keep, C) with
            ``L_keep = int(L * (1 - mask_ratio))`` (L when unmasked), mask (B, L), and
            ids_restore (B, L).
        """
        if mask is None or mask is False:
            hidden = self.encode(x)
            batch_size, length = hidden.shape[:2]
            ids_restore = torch.arange(length, device=hidden.device).expand(batch_size, length)
            return hidden, hidden.new_zeros(batch_size, length), ids_restore
        if mask is not True:
            raise TypeError(f"mask must be True, False or None, got {mask!r}")
        grid = self.patch_embed.grid_size(x)
        if grid != self.patch_embed.patches_resolution:
            raise ValueError(
                f"x must be {self.patch_embed.img_size[0]}×{self.patch_embed.img_size[1]} "
                f"(img_size) for masked encoding, got {x.shape[-2]}×{x.shape[-1]}"
            )
        ids_keep, ids_restore, unit_mask = self.masking_id(
            x.shape[0], self.mask_ratio, noise=noise, generator=generator
        )
        hidden = self.encode(x, idx_keep=ids_keep)
        return hidden, unit_mask, ids_restore
