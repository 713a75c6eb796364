"""State-dict layouts of the model façades, and the names they share.

Every façade holds its :class:`~ssl_mae.MaskedAutoencoder` as the child ``core``, so its
parameters live under ``core.encoder.*`` and ``core.decoder.*``. Users and checkpoints expect
other names: the official MAE keys for ``MAE`` (``blocks.0.attn.qkv.weight``,
``decoder_embed.weight``), ``backbone.*`` for the HiViT pretrainer, ``encoder.*``/``decoder.*``
for ``SimpleMAE``. :func:`install_layout` renames the keys on the way out of ``state_dict`` and
back on the way into ``load_state_dict`` (which also accepts the internal ``core.*`` names), so
every parameter exists once and every checkpoint format loads with plain ``load_state_dict``;
missing and unexpected keys are reported under the published names too.

:class:`CoreBlocks` gives every façade the same names for its core's decoder and loss;
:class:`CoreFacade` adds ``masked_autoencoder`` for the façades whose core is the child ``core``;
an :class:`Alias` publishes a block under the name users expect (``MAE.blocks``).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast, overload

from torch import nn

from ssl_mae.core import MaskedAutoencoder, MaskedEncoder
from ssl_mae.loss import MAELoss
from ssl_mae.modules.decoder import MAEDecoder

__all__ = [
    "Alias",
    "CoreBlocks",
    "CoreFacade",
    "decoder_for",
    "install_layout",
    "prefix_layout",
]

KeyMap = Callable[[str], str]
T = TypeVar("T")


def install_layout(module: nn.Module, export_key: KeyMap, import_key: KeyMap) -> None:
    """Renames ``module``'s state-dict keys in both directions.

    Args:
        module: The façade.
        export_key: Internal key (relative to ``module``) → published key.
        import_key: Published (or internal) key → internal key; must invert ``export_key``.
    """

    def export(
        _module: nn.Module, state_dict: MutableMapping[str, Any], prefix: str, _meta: Any
    ) -> None:
        _rename(state_dict, prefix, export_key)

    loading_prefixes: list[str] = []

    def import_(
        state_dict: MutableMapping[str, Any], prefix: str, *_args: Any, **_kwargs: Any
    ) -> None:
        loading_prefixes.append(prefix)
        _rename(state_dict, prefix, import_key)

    def report(_module: nn.Module, incompatible: Any) -> None:
        # Missing and unexpected keys (and strict's error) in the published names the caller
        # used, e.g. "decoder_embed.weight", not "model.decoder.decoder_embed.weight".
        prefix = loading_prefixes.pop() if loading_prefixes else ""
        for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
            keys[:] = [
                prefix + export_key(key[len(prefix) :]) if key.startswith(prefix) else key
                for key in keys
            ]

    # The underscore hooks exist in every torch >= 2.1 (the public ones came later).
    module._register_state_dict_hook(export)  # type: ignore[no-untyped-call]
    module._register_load_state_dict_pre_hook(import_)  # type: ignore[no-untyped-call]
    module.register_load_state_dict_post_hook(report)  # type: ignore[no-untyped-call]


def _rename(state_dict: MutableMapping[str, Any], prefix: str, key_map: KeyMap) -> None:
    # Rebuild in order: state dicts are ordered, and checkpoints list keys as modules do.
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        if key.startswith(prefix):
            key = prefix + key_map(key[len(prefix) :])
        state_dict[key] = value


def prefix_layout(pairs: list[tuple[str, str]]) -> tuple[KeyMap, KeyMap]:
    """Key maps that swap prefixes: ``[("core.encoder.", "encoder."), ...]`` (internal first).

    Keys that match no pair are left as they are.
    """

    def export_key(key: str) -> str:
        for internal, published in pairs:
            if key.startswith(internal):
                return published + key[len(internal) :]
        return key

    def import_key(key: str) -> str:
        for internal, published in pairs:
            if key.startswith(published) and not key.startswith(internal):
                return internal + key[len(published) :]
        return key

    return export_key, import_key


def decoder_for(
    encoder: MaskedEncoder,
    embed_dim: int,
    decoder_embed_dim: int,
    decoder_depth: int,
    decoder_num_heads: int,
    **options: Any,
) -> MAEDecoder:
    """An :class:`~ssl_mae.modules.MAEDecoder` over the patches of ``encoder``: its patch size,
    channels, patch grid and prefix tokens, so that a façade states only the decoder's own size.

    Args:
        encoder: The façade's encoder.
        embed_dim: Token width of the encoder.
        decoder_embed_dim: Token width of the decoder.
        decoder_depth: Number of decoder blocks.
        decoder_num_heads: Attention heads per decoder block.
        **options: Further :class:`~ssl_mae.modules.MAEDecoder` arguments (``mlp_ratio``...).
    """
    grid_h, grid_w = encoder.grid_size
    return MAEDecoder(
        num_patches=grid_h * grid_w,
        patch_size=encoder.patch_size,
        in_chans=encoder.in_chans,
        embed_dim=embed_dim,
        decoder_embed_dim=decoder_embed_dim,
        decoder_depth=decoder_depth,
        decoder_num_heads=decoder_num_heads,
        num_prefix_tokens=encoder.num_prefix_tokens,
        grid_size=encoder.grid_size,
        **options,
    )


class CoreBlocks:
    """The core's decoder and loss under the names every façade gives them (a mixin)."""

    if TYPE_CHECKING:

        @property
        def masked_autoencoder(self) -> MaskedAutoencoder: ...

    @property
    def decoder(self) -> MAEDecoder:
        """The decoder."""
        return cast(MAEDecoder, self.masked_autoencoder.decoder)

    @property
    def criterion(self) -> MAELoss:
        """The reconstruction loss."""
        return cast(MAELoss, self.masked_autoencoder.loss)


class CoreFacade(CoreBlocks):
    """A façade that holds its core as the child ``core`` (a mixin)."""

    core: MaskedAutoencoder

    @property
    def masked_autoencoder(self) -> MaskedAutoencoder:
        """The core that runs every step."""
        return self.core


class Alias(Generic[T]):
    """A read-only attribute that is another one under the name users expect, e.g.
    ``blocks = Alias[nn.Sequential]("encoder.vit.blocks")`` (the very object, not a copy).

    Args:
        path: Dotted attribute path from the instance.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.__doc__ = f"The same object as ``{path}``."

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Alias[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object, owner: type) -> Alias[T] | T:
        if instance is None:
            return self
        value = instance
        for name in self.path.split("."):
            value = getattr(value, name)
        return cast(T, value)

    def __set__(self, instance: object, value: object) -> NoReturn:
        raise AttributeError(f"{self.name} is {self.path}; set that instead")
