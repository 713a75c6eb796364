"""Reading and writing the Hugging Face checkpoint layout: ``config.json`` + ``model.safetensors``.

Only ``safetensors`` is needed; ``huggingface_hub`` is imported when a hub id is given instead of a
local directory (online it downloads, offline it uses the local cache).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from ssl_mae._io import read_weights_file

__all__ = [
    "CONFIG_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFE_WEIGHTS_NAME",
    "WEIGHTS_NAME",
    "load_state_dict_from_directory",
    "resolve_pretrained_directory",
    "save_state_dict_to_directory",
]

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"


def resolve_pretrained_directory(
    pretrained_model_name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    config_only: bool = False,
) -> Path:
    """Returns a local directory holding a saved model, downloading it from the hub if needed.

    Args:
        pretrained_model_name_or_path: Local directory, or hub id such as
            ``"facebook/vit-mae-base"``.
        revision: Hub revision.
        cache_dir: Hub cache directory.
        local_files_only: Only use cached hub files (also implied by ``HF_HUB_OFFLINE=1``).
        config_only: Fetch ``config.json`` only.

    Returns:
        Path of a directory that contains ``config.json``.
    """
    if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
        raise TypeError(
            "pretrained_model_name_or_path must be a directory or a hub id string, "
            f"got {type(pretrained_model_name_or_path).__name__}"
        )
    path = Path(pretrained_model_name_or_path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"directory {str(path)!r} has no {CONFIG_NAME}")
        return path
    name = str(pretrained_model_name_or_path)
    if path.exists() or name.count("/") > 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"pretrained_model_name_or_path {name!r} is neither a directory with a "
            f"{CONFIG_NAME} nor a hub id like 'facebook/vit-mae-base'"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(
            f"{name!r} is not a local directory; loading from the Hugging Face Hub needs "
            "huggingface_hub (pip install 'ssl_mae[hub]')"
        ) from None
    patterns = [CONFIG_NAME] if config_only else [CONFIG_NAME, "*.safetensors", "*.json"]
    try:
        local = snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
            allow_patterns=patterns,
        )
    except Exception as error:  # hub errors have many types; name the id and the cause
        raise OSError(
            f"could not get {name!r} from the Hugging Face Hub (or its local cache): {error}"
        ) from error
    directory = Path(local)
    if not config_only and not any(directory.glob("*.safetensors")):
        # Old hub repositories only have pytorch_model.bin.
        local = snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
            allow_patterns=[WEIGHTS_NAME],
        )
        directory = Path(local)
    return directory


def _read_weights_file(path: Path) -> dict[str, Tensor]:
    """One weights file as a dict of tensors (errors name the file, see ``read_weights_file``).

    Raises:
        ValueError: When the file holds something else than a dict of tensors.
    """
    loaded = read_weights_file(path)
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, Tensor) for value in loaded.values()
    ):
        held = "a dict with non-tensor values" if isinstance(loaded, Mapping) else type(loaded)
        raise ValueError(f"weights file {str(path)!r} must hold a dict of tensors, got {held}")
    return {str(key): value for key, value in loaded.items()}


def _shard_paths(folder: Path, index: Path) -> list[Path]:
    """The shard files a ``model.safetensors.index.json`` names, each checked to be a file name
    inside ``folder``: a hostile index must not make us read ``../elsewhere`` or ``/etc``.

    The check is on the names, not on resolved paths, because the Hugging Face cache keeps the
    files of a snapshot as symlinks into a sibling ``blobs`` folder.
    """
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(index)!r} is not valid UTF-8 JSON: {error}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{str(index)!r} must hold a non-empty 'weight_map' object")
    paths = []
    for shard in sorted({str(name) for name in weight_map.values()}):
        relative = Path(shard)
        if not shard or relative.is_absolute() or ".." in relative.parts or "\\" in shard:
            raise ValueError(
                f"{str(index)!r} names the shard {shard!r}, which is not a file inside the model "
                f"folder {str(folder)!r}; shard names must be relative paths without '..'"
            )
        paths.append(folder / relative)
    return paths


def load_state_dict_from_directory(directory: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Reads the weights of a saved model directory on the CPU.

    Looks for ``model.safetensors``, then a sharded ``model.safetensors.index.json`` (whose
    shard names must lie inside the directory), then a legacy ``pytorch_model.bin`` (loaded with
    ``weights_only=True``).

    Args:
        directory: The model directory.

    Returns:
        Dict from (Hugging Face) parameter name to tensor.

    Raises:
        FileNotFoundError: No weights file, or a shard named by the index is missing.
        OSError: A weights file cannot be decoded (the message names it).
        ValueError: An index naming files outside the directory, or a file that holds
            something else than a dict of tensors.
    """
    folder = Path(directory)
    single = folder / SAFE_WEIGHTS_NAME
    if single.is_file():
        return _read_weights_file(single)
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        state_dict: dict[str, Tensor] = {}
        for shard in _shard_paths(folder, index):
            state_dict.update(_read_weights_file(shard))
        return state_dict
    legacy = folder / WEIGHTS_NAME
    if legacy.is_file():
        return _read_weights_file(legacy)
    raise FileNotFoundError(
        f"directory {str(folder)!r} has no weights: expected {SAFE_WEIGHTS_NAME}, "
        f"{SAFE_WEIGHTS_INDEX_NAME} or {WEIGHTS_NAME}"
    )


def save_state_dict_to_directory(
    state_dict: dict[str, Tensor], directory: str | os.PathLike[str]
) -> Path:
    """Writes weights as ``model.safetensors`` (``format: pt`` metadata, as transformers does).

    Args:
        state_dict: Independent, contiguous tensors.
        directory: Target directory (created if needed).

    Returns:
        Path of the written file.
    """
    from safetensors.torch import save_file

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SAFE_WEIGHTS_NAME
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
