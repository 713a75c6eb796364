"""Tests for ssl_mae.data: Fashion-MNIST IDX reading, image folders, tensor datasets, factory."""

from __future__ import annotations

import gzip
import io
import logging
import re
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image
from torch.utils.data import DataLoader

from ssl_mae.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    UNLABELED,
    FashionMNISTDataset,
    ImageFolderDataset,
    TensorImageDataset,
    build_dataset,
    build_torchvision_dataset,
    collate_skip_none,
    convert_image_mode,
    dataset_channels,
    dataset_info,
    default_data_root,
    find_fashion_mnist_files,
    load_fashion_mnist,
    load_image,
    pil_to_tensor,
    read_idx,
    tensor_to_pil,
)
from ssl_mae.data import fashion_mnist as fashion_mnist_module

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-labels-idx1-ubyte.gz").is_file(),
    reason="Debian fashion-mnist package not installed",
)


# --------------------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray[Any, Any], magic: int | None = None) -> Path:
    """Write an unsigned-byte IDX file (gzip if the name ends in .gz), independently of ssl_mae."""
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_fake_fashion_root(
    directory: Path, num: int = 6, train: bool = True, gz: bool = True
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(num)
    images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(num,), dtype=np.uint8)
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


class FakeTorchvisionFashionMNIST:
    """Stands in for torchvision.datasets.FashionMNIST so that no download can happen."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        type(self).calls.append({"root": root, "train": train, "download": download})
        generator = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=generator)
        self.targets = torch.tensor([4, 0, 9])


@pytest.fixture
def fake_torchvision_fashion(monkeypatch: pytest.MonkeyPatch) -> type[FakeTorchvisionFashionMNIST]:
    FakeTorchvisionFashionMNIST.calls = []
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeTorchvisionFashionMNIST)
    return FakeTorchvisionFashionMNIST


def save(image: Image.Image, path: Path, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def rgb_image(value: int = 100, size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), (value, 255 - value, value // 2))


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def debian_train() -> tuple[torch.Tensor, torch.Tensor]:
    return load_fashion_mnist(train=True, root=DEBIAN_DIR)


@needs_debian
def test_debian_train_split_matches_independent_reading(
    debian_train: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = debian_train
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert set(torch.unique(labels).tolist()) == set(range(10))
    # Independent reading of the raw bytes: labels start after 8 header bytes, images after 16.
    with gzip.open(DEBIAN_DIR / "train-labels-idx1-ubyte.gz", "rb") as stream:
        label_header = stream.read(9)
    assert struct.unpack(">II", label_header[:8]) == (0x801, 60000)
    assert int(labels[0]) == label_header[8]
    with gzip.open(DEBIAN_DIR / "train-images-idx3-ubyte.gz", "rb") as stream:
        first_image = np.frombuffer(stream.read(16 + 784)[16:], dtype=np.uint8).reshape(28, 28)
    assert torch.equal(images[0], torch.from_numpy(first_image.copy()))


@needs_debian
def test_debian_test_split_matches_torchvision_reader(tmp_path: Path) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images, labels = load_fashion_mnist(train=False)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert int(labels.min()) >= 0 and int(labels.max()) <= 9
    for name, loaded, reader in (
        ("t10k-labels-idx1-ubyte", labels, read_label_file),
        ("t10k-images-idx3-ubyte", images, read_image_file),
    ):
        raw = tmp_path / name
        raw.write_bytes(gzip.decompress((DEBIAN_DIR / f"{name}.gz").read_bytes()))
        assert torch.equal(loaded, reader(str(raw)).to(loaded.dtype))


def test_fake_root_round_trip_gz_and_uncompressed(tmp_path: Path) -> None:
    images, labels = make_fake_fashion_root(tmp_path / "gz", num=5, train=False, gz=True)
    loaded_images, loaded_labels = load_fashion_mnist(train=False, root=tmp_path / "gz")
    assert torch.equal(loaded_images, torch.from_numpy(images))
    assert torch.equal(loaded_labels, torch.from_numpy(labels).long())
    assert loaded_labels.dtype == torch.int64

    # torchvision's layout root/FashionMNIST/raw with uncompressed files is found as well
    raw_dir = tmp_path / "tv" / "FashionMNIST" / "raw"
    images, labels = make_fake_fashion_root(raw_dir, num=4, train=True, gz=False)
    found = find_fashion_mnist_files(tmp_path / "tv", train=True)
    assert found is not None and found[0].parent == raw_dir
    loaded_images, _ = load_fashion_mnist(train=True, root=str(tmp_path / "tv"))
    assert torch.equal(loaded_images, torch.from_numpy(images))
    # the other split is absent
    assert find_fashion_mnist_files(tmp_path / "tv", train=False) is None


def test_env_var_overrides_default_and_argument_overrides_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_images, _ = make_fake_fashion_root(tmp_path / "env", num=3)
    arg_images, _ = make_fake_fashion_root(tmp_path / "arg", num=7)
    monkeypatch.setenv("SSL_MAE_FASHION_MNIST", str(tmp_path / "env"))
    assert torch.equal(load_fashion_mnist()[0], torch.from_numpy(env_images))
    assert torch.equal(load_fashion_mnist(root=tmp_path / "arg")[0], torch.from_numpy(arg_images))


def test_wrong_magic_number_is_a_clear_error(tmp_path: Path) -> None:
    make_fake_fashion_root(tmp_path, num=2)
    labels_file = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels_file, np.zeros(2, dtype=np.uint8), magic=0x00000803)
    with pytest.raises(ValueError, match=r"magic number 0x00000803; expected 0x00000801") as info:
        load_fashion_mnist(root=tmp_path)
    assert str(labels_file) in str(info.value)


def test_truncated_and_invalid_idx_files_are_clear_errors(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "good", np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert read_idx(good).tolist() == np.arange(12).reshape(3, 4).tolist()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(truncated)
    not_gzip = tmp_path / "not.gz"
    not_gzip.write_bytes(b"plain bytes, not gzip")
    with pytest.raises(ValueError, match="cannot read IDX file"):
        read_idx(not_gzip)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="invalid magic number 0x12340801"):
        read_idx(garbage)


def test_wrong_image_size_and_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 27, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected \(N, 28, 28\)"):
        load_fashion_mnist(root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"2 images .* but 3 labels"):
        load_fashion_mnist(root=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 10], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.9, found 10"):
        load_fashion_mnist(root=tmp_path)


def test_fallback_to_torchvision_when_root_has_no_files(
    tmp_path: Path, fake_torchvision_fashion: type[FakeTorchvisionFashionMNIST]
) -> None:
    missing = tmp_path / "missing"
    images, labels = load_fashion_mnist(train=False, root=missing)
    assert fake_torchvision_fashion.calls == [
        {"root": str(missing), "train": False, "download": True}
    ]
    assert images.shape == (3, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [4, 0, 9] and labels.dtype == torch.int64

    with pytest.raises(FileNotFoundError, match="download=True"):
        load_fashion_mnist(root=missing, download=False)
    assert len(fake_torchvision_fashion.calls) == 1


def test_fallback_when_debian_dir_missing_uses_default_data_root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_torchvision_fashion: type[FakeTorchvisionFashionMNIST],
) -> None:
    monkeypatch.delenv("SSL_MAE_FASHION_MNIST", raising=False)
    monkeypatch.setattr(fashion_mnist_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no_debian")
    monkeypatch.setenv("SSL_MAE_DATA_ROOT", str(tmp_path / "cache"))
    assert default_data_root() == tmp_path / "cache"
    load_fashion_mnist(train=True)
    assert fake_torchvision_fashion.calls == [
        {"root": str(tmp_path / "cache"), "train": True, "download": True}
    ]
    # once files exist in default_data_root()/FashionMNIST/raw, they are read directly
    images, _ = make_fake_fashion_root(tmp_path / "cache" / "FashionMNIST" / "raw", num=2)
    assert torch.equal(load_fashion_mnist(train=True)[0], torch.from_numpy(images))
    assert len(fake_torchvision_fashion.calls) == 1


def test_load_fashion_mnist_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="root must be"):
        load_fashion_mnist(root=123)  # type: ignore[arg-type]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="root must be a directory"):
        load_fashion_mnist(root=a_file)


def test_fashion_mnist_dataset_tensors_and_pil_transform(tmp_path: Path) -> None:
    images, labels = make_fake_fashion_root(tmp_path, num=4)
    dataset = FashionMNISTDataset(root=tmp_path)
    assert len(dataset) == 4 and dataset.num_channels == 1
    image, label = dataset[2]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8
    assert torch.equal(image[0], torch.from_numpy(images[2])) and label == int(labels[2])
    assert dataset.classes == FASHION_MNIST_CLASSES

    seen: list[Image.Image] = []

    def transform(pil: Image.Image) -> torch.Tensor:
        seen.append(pil)
        return torch.from_numpy(np.array(pil))

    transformed = FashionMNISTDataset(root=tmp_path, transform=transform)
    output, _ = transformed[1]
    assert seen[0].mode == "L" and seen[0].size == (28, 28)
    assert torch.equal(output, torch.from_numpy(images[1]))


# --------------------------------------------------------------------------- tensor dataset


def test_tensor_image_dataset() -> None:
    images = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 1, 0], dtype=torch.int32)
    dataset = TensorImageDataset(images, labels)
    image, label = dataset[3]
    assert torch.equal(image, images[3]) and label == 1 and isinstance(label, int)
    assert dataset.to("cpu") is dataset

    pil_dataset = TensorImageDataset(images, transform=lambda pil: pil)
    pil, label = pil_dataset[0]
    assert label == UNLABELED
    assert pil.mode == "RGB" and pil.size == (6, 4)
    assert np.array_equal(np.array(pil), images[0].permute(1, 2, 0).numpy())

    tensor_dataset = TensorImageDataset(images, transform=lambda t: t.float() / 255, to_pil=False)
    assert torch.allclose(tensor_dataset[4][0], images[4].float() / 255)

    batch = next(iter(DataLoader(dataset, batch_size=5)))
    assert batch[0].shape == (5, 3, 4, 6) and batch[1].tolist() == [0, 1, 2, 1, 0]


def test_tensor_image_dataset_validation() -> None:
    with pytest.raises(ValueError, match="uint8 tensor"):
        TensorImageDataset(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="uint8 tensor"):
        TensorImageDataset(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"images must be a torch\.Tensor"):
        TensorImageDataset(np.zeros((2, 1, 4, 4), dtype=np.uint8))  # type: ignore[arg-type]
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"labels must be an integer tensor of shape \(2,\)"):
        TensorImageDataset(images, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        TensorImageDataset(images, torch.zeros(2))
    with pytest.raises(ValueError, match="5 channels"):
        TensorImageDataset(torch.zeros(2, 5, 4, 4, dtype=torch.uint8), transform=lambda x: x)
    with pytest.raises(ValueError, match="C in"):
        tensor_to_pil(torch.zeros(2, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------------------- image modes


def test_convert_image_mode_alpha_composites_on_white() -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    assert list(convert_image_mode(rgba, "RGB").getdata()) == [(255, 255, 255), (255, 0, 0)]
    half = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    value = convert_image_mode(half, "RGB").getpixel((0, 0))
    assert isinstance(value, tuple) and all(abs(v - 127) <= 1 for v in value)

    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (40, 255))
    converted = convert_image_mode(la, "L")
    assert converted.mode == "L" and list(converted.getdata()) == [255, 40]


def test_convert_image_mode_high_bit_depth_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    sixteen = Image.fromarray(values)
    assert sixteen.mode == "I;16"
    assert np.array(convert_image_mode(sixteen, "L")).tolist() == [[0, 100, 255]]
    assert np.array(convert_image_mode(sixteen, "RGB"))[0, 1].tolist() == [100, 100, 100]
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    assert np.array(convert_image_mode(as_int32, "L")).tolist() == [[0, 100, 255]]
    as_float = Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32))
    assert np.array(convert_image_mode(as_float, "L")).tolist() == [[0, 64, 255]]


def test_convert_image_mode_palette_cmyk_bilevel_and_keep() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert list(convert_image_mode(palette, "RGB").getdata()) == [(0, 0, 0), (10, 200, 30)]
    cyan = Image.new("CMYK", (1, 1), (255, 0, 0, 0))
    assert convert_image_mode(cyan, "RGB").getpixel((0, 0)) == (0, 255, 255)
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert list(convert_image_mode(bilevel, "L").getdata()) == [0, 255]
    grey = Image.new("RGB", (1, 1), (77, 77, 77))
    assert convert_image_mode(grey, "L").getpixel((0, 0)) == 77
    assert convert_image_mode(cyan, None) is cyan and convert_image_mode(cyan, "auto") is cyan
    with pytest.raises(ValueError, match=r"mode must be one of .* got 'RGBA'"):
        convert_image_mode(grey, "RGBA")


def test_pil_to_tensor_layouts() -> None:
    rgb = rgb_image(size=3)
    tensor = pil_to_tensor(rgb)
    assert tensor.shape == (3, 3, 3) and tensor.dtype == torch.uint8
    assert tensor[:, 0, 0].tolist() == list(rgb.getpixel((0, 0)))  # type: ignore[arg-type]
    assert pil_to_tensor(Image.new("L", (4, 2), 9)).shape == (1, 2, 4)
    sixteen = pil_to_tensor(Image.fromarray(np.full((2, 2), 60000, dtype=np.uint16)))
    assert sixteen.dtype == torch.int32 and int(sixteen.max()) == 60000


# --------------------------------------------------------------------------- image folders


def test_image_folder_class_subfolders(tmp_path: Path) -> None:
    save(rgb_image(1), tmp_path / "zebra" / "a.png")
    save(rgb_image(2), tmp_path / "zebra" / "nested" / "deeper" / "b.JPG")
    save(rgb_image(3), tmp_path / "apple" / "c.bmp")
    save(rgb_image(4), tmp_path / "apple" / ".ipynb_checkpoints" / "hidden.png")
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_class").mkdir()

    dataset = ImageFolderDataset(tmp_path)
    assert dataset.layout == "classes"
    assert dataset.classes == ["apple", "empty_class", "zebra"]
    assert dataset.class_to_idx == {"apple": 0, "empty_class": 1, "zebra": 2}
    assert [(path.name, label) for path, label in dataset.samples] == [
        ("c.bmp", 0),
        ("a.png", 2),
        ("b.JPG", 2),
    ]
    assert dataset.targets == [0, 2, 2]
    sample = dataset[0]
    assert sample is not None
    image, label = sample
    assert label == 0 and image.shape == (3, 8, 8) and image.dtype == torch.uint8
    assert image[:, 0, 0].tolist() == list(rgb_image(3).getpixel((0, 0)))  # type: ignore[arg-type]
    grey = ImageFolderDataset(tmp_path, mode="L")[1]
    assert grey is not None and grey[0].shape == (1, 8, 8)


def test_image_folder_flat_layout_and_forced_classes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(rgb_image(1), tmp_path / "x.png")
    save(rgb_image(2), tmp_path / "sub" / "y.jpeg")
    flat = ImageFolderDataset(tmp_path)
    assert flat.layout == "flat" and flat.classes == []
    assert sorted(path.name for path, _ in flat.samples) == ["x.png", "y.jpeg"]
    assert set(flat.targets) == {UNLABELED}

    with caplog.at_level(logging.WARNING, logger="ssl_mae.data.image_folder"):
        forced = ImageFolderDataset(tmp_path, layout="classes")
    assert forced.classes == ["sub"] and [p.name for p, _ in forced.samples] == ["y.jpeg"]
    assert "ignores 1 image files" in caplog.text
    assert len(ImageFolderDataset(tmp_path, extensions=["png"])) == 1


def test_image_folder_construction_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(f"root '{empty}' contains no image files")):
        ImageFolderDataset(empty)
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"root .* contains no image files"):
        ImageFolderDataset(empty)
    with pytest.raises(ValueError, match=re.escape(f"root '{tmp_path / 'nope'}' does not exist")):
        ImageFolderDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="is not a directory"):
        ImageFolderDataset(empty / "readme.txt")
    with pytest.raises(ValueError, match="root must be the path"):
        ImageFolderDataset(None)  # type: ignore[arg-type]
    save(rgb_image(), tmp_path / "ok" / "a.png")
    with pytest.raises(ValueError, match="layout must be one of"):
        ImageFolderDataset(tmp_path / "ok", layout="tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error must be one of"):
        ImageFolderDataset(tmp_path / "ok", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        ImageFolderDataset(tmp_path / "ok", mode="CMYK")


@pytest.fixture
def messy_folder(tmp_path: Path) -> tuple[Path, set[str], set[str]]:
    """A flat folder of 8x8 images in awkward modes plus three unreadable files."""
    root = tmp_path / "messy"
    save(rgb_image(50), root / "plain.png")
    save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), root / "cmyk.jpg")
    palette = Image.new("P", (8, 8))
    palette.putpalette([255, 0, 0] * 256)
    save(palette, root / "palette.png")
    save(Image.fromarray(np.full((8, 8), 257 * 200, dtype=np.uint16)), root / "sixteen.png")
    save(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), root / "rgba.png")
    save(Image.new("LA", (8, 8), (10, 255)), root / "la.png")
    good = {"plain.png", "cmyk.jpg", "palette.png", "sixteen.png", "rgba.png", "la.png"}

    jpeg = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(jpeg, "JPEG")
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("this is a text file pretending to be a PNG\n" * 20)
    bad = {"truncated.jpg", "zero.png", "text.png"}
    return root, good, bad


def test_load_image_modes_from_files(messy_folder: tuple[Path, set[str], set[str]]) -> None:
    root, _, _ = messy_folder
    assert Image.open(root / "cmyk.jpg").mode == "CMYK"
    assert Image.open(root / "sixteen.png").mode.startswith("I")
    assert load_image(root / "cmyk.jpg").getpixel((0, 0)) == pytest.approx((255, 0, 0), abs=3)
    assert load_image(root / "palette.png").getpixel((0, 0)) == (255, 0, 0)
    assert load_image(root / "sixteen.png", mode="L").getpixel((0, 0)) == 200
    assert load_image(root / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(root / "la.png", mode="L").getpixel((0, 0)) == 10
    assert load_image(root / "la.png", mode=None).mode == "LA"
    for name in ("truncated.jpg", "zero.png", "text.png"):
        with pytest.raises(Exception):  # noqa: B017 - Pillow's error type varies by file
            load_image(root / name)


def test_image_folder_skips_unreadable_files(
    messy_folder: tuple[Path, set[str], set[str]], caplog: pytest.LogCaptureFixture
) -> None:
    root, good, bad = messy_folder
    dataset = ImageFolderDataset(root)
    assert len(dataset) == len(good) + len(bad) and dataset.num_skipped == 0
    samples = [dataset[i] for i in range(len(dataset))]
    loaded = {
        path.name for (path, _), sample in zip(dataset.samples, samples, strict=True) if sample
    }
    assert loaded == good
    assert all(s[0].shape == (3, 8, 8) for s in samples if s is not None)
    assert dataset.num_skipped == len(bad)
    assert {path.name for path in dataset.skipped_paths()} == bad
    # a second pass neither re-counts nor resurrects the bad files
    assert sum(dataset[i] is None for i in range(len(dataset))) == len(bad)
    assert dataset.num_skipped == len(bad)

    with caplog.at_level(logging.WARNING, logger="ssl_mae.data.image_folder"):
        assert dataset.report_skipped() == len(bad)
    assert f"skipped {len(bad)} unreadable files (first: {dataset.skipped_paths()[0]})" in (
        caplog.text
    )


def test_transform_errors_are_not_swallowed(messy_folder: tuple[Path, set[str], set[str]]) -> None:
    root, _, _ = messy_folder

    def broken(image: Image.Image) -> None:
        raise RuntimeError("bug in user transform")

    dataset = ImageFolderDataset(root, transform=broken)
    index = [path.name for path, _ in dataset.samples].index("plain.png")
    with pytest.raises(RuntimeError, match="bug in user transform"):
        dataset[index]
    assert dataset.num_skipped == 0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_image_folder_through_dataloader(
    messy_folder: tuple[Path, set[str], set[str]], num_workers: int
) -> None:
    root, good, bad = messy_folder
    dataset = ImageFolderDataset(root, mode="L")
    loader = DataLoader(
        dataset,
        batch_size=4,
        num_workers=num_workers,
        collate_fn=collate_skip_none,
        persistent_workers=num_workers > 0,
    )
    for _epoch in range(2):
        batches = [batch for batch in loader if batch is not None]
        images = torch.cat([batch[0] for batch in batches])
        assert images.shape == (len(good), 1, 8, 8) and images.dtype == torch.uint8
        assert torch.cat([batch[1] for batch in batches]).eq(UNLABELED).all()
        # counted in the worker processes, observed here in the main process
        assert dataset.num_skipped == len(bad)
        assert {path.name for path in dataset.skipped_paths()} == bad


def test_image_folder_skip_count_with_spawned_workers(
    messy_folder: tuple[Path, set[str], set[str]],
) -> None:
    root, good, bad = messy_folder
    dataset = ImageFolderDataset(root)
    loader = DataLoader(
        dataset,
        batch_size=3,
        num_workers=1,  # one spawned interpreter is enough to prove cross-process counting
        collate_fn=collate_skip_none,
        multiprocessing_context="spawn",
    )
    total = sum(len(batch[1]) for batch in loader if batch is not None)
    assert total == len(good) and dataset.num_skipped == len(bad)


def test_on_error_replace_keeps_batches_full(
    messy_folder: tuple[Path, set[str], set[str]],
) -> None:
    root, _, bad = messy_folder
    dataset = ImageFolderDataset(root, on_error="replace")
    loader = DataLoader(dataset, batch_size=3, num_workers=0)
    sizes = [len(batch[1]) for batch in loader]
    assert sizes == [3, 3, 3] and dataset.num_skipped == len(bad)
    assert all(dataset[i] is not None for i in range(-len(dataset), len(dataset)))
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]


def test_on_error_raise_and_all_unreadable(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(OSError, match=r"unreadable image file .*zero\.png"):
        ImageFolderDataset(tmp_path, on_error="raise")[0]
    with pytest.raises(OSError, match="none of the 1 image files"):
        ImageFolderDataset(tmp_path, on_error="replace")[0]
    skipping = ImageFolderDataset(tmp_path)
    assert skipping[0] is None and skipping.num_skipped == 1


def test_collate_skip_none() -> None:
    assert collate_skip_none([None, None]) is None
    batch = collate_skip_none([(torch.ones(2), 1), None, (torch.zeros(2), 3)])
    assert batch[0].tolist() == [[1.0, 1.0], [0.0, 0.0]] and batch[1].tolist() == [1, 3]


# --------------------------------------------------------------------------- torchvision datasets


def test_torchvision_datasets_absent_without_download(tmp_path: Path) -> None:
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("stl10", "stl10_binary")):
        with pytest.raises(FileNotFoundError, match="pass download=True") as info:
            build_dataset(name, root=tmp_path)
        assert str(tmp_path / folder) in str(info.value)
    # folder present but empty: torchvision's own integrity check fails -> same clear error
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(FileNotFoundError, match="cifar100 not found under root"):
        build_dataset("cifar100", root=tmp_path)


def test_torchvision_arguments_are_forwarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(class_name: str) -> Any:
        def construct(**kwargs: Any) -> str:
            calls.append((class_name, kwargs))
            return class_name

        return construct

    for class_name in ("CIFAR10", "CIFAR100", "STL10"):
        monkeypatch.setattr(torchvision.datasets, class_name, fake(class_name))
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "stl10_binary").mkdir()

    def transform(x: Any) -> Any:
        return x

    build_dataset("CIFAR-10", root=tmp_path, train=False, transform=transform)
    build_dataset("stl10", root=tmp_path, train=True)
    build_dataset("stl10", root=tmp_path, train=False)
    build_torchvision_dataset("stl10", root=tmp_path, split="unlabeled")
    build_dataset("cifar100", root=tmp_path / "elsewhere", download=True)
    root = str(tmp_path)
    assert calls == [
        ("CIFAR10", {"root": root, "transform": transform, "download": False, "train": False}),
        ("STL10", {"root": root, "transform": None, "download": False, "split": "train"}),
        ("STL10", {"root": root, "transform": None, "download": False, "split": "test"}),
        ("STL10", {"root": root, "transform": None, "download": False, "split": "unlabeled"}),
        (
            "CIFAR100",
            {
                "root": str(tmp_path / "elsewhere"),
                "transform": None,
                "download": True,
                "train": True,
            },
        ),
    ]
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("stl10", root=tmp_path, split="val")
    with pytest.raises(ValueError, match="split is only used by 'stl10'"):
        build_dataset("cifar10", root=tmp_path, split="train")


# --------------------------------------------------------------------------- factory


def test_build_dataset_names_and_errors(tmp_path: Path) -> None:
    make_fake_fashion_root(tmp_path / "fm", num=3)
    fashion = build_dataset("Fashion-MNIST", root=tmp_path / "fm", download=False)
    assert isinstance(fashion, FashionMNISTDataset) and len(fashion) == 3
    save(rgb_image(), tmp_path / "imgs" / "cls" / "a.png")
    folder = build_dataset("folder", root=tmp_path / "imgs", mode="L")
    assert isinstance(folder, ImageFolderDataset) and folder.mode == "L"

    with pytest.raises(ValueError, match="root must be given for the 'folder' dataset, got None"):
        build_dataset("folder")
    with pytest.raises(ValueError, match=r"name must be one of \['cifar10', .*got 'imagenet'"):
        build_dataset("imagenet")
    with pytest.raises(TypeError, match="name must be a str"):
        build_dataset(3)  # type: ignore[arg-type]


def test_dataset_channels_and_info(tmp_path: Path) -> None:
    images, _ = make_fake_fashion_root(tmp_path, num=2)
    fashion = FashionMNISTDataset(root=tmp_path)
    assert dataset_channels("fashion_mnist") == fashion.num_channels
    assert dataset_info("fashion_mnist").image_size == images.shape[1:]
    assert dataset_info("fashion_mnist").num_classes == len(FASHION_MNIST_CLASSES)
    assert dataset_channels("cifar10") == dataset_channels("stl10") == 3
    save(rgb_image(), tmp_path / "imgs" / "a.png")
    for mode in ("RGB", "L"):
        sample = ImageFolderDataset(tmp_path / "imgs", mode=mode)[0]
        assert sample is not None and sample[0].shape[0] == dataset_channels("folder", mode=mode)
    with pytest.raises(ValueError, match="mode must be 'RGB' or 'L'"):
        dataset_channels("folder", mode=None)
    with pytest.raises(ValueError, match="name must be one of"):
        dataset_channels("mnist")
    assert set(DATASETS) == {"fashion_mnist", "folder", "cifar10", "cifar100", "stl10"}
