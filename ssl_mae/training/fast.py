"""Which parts of the fast path a run uses, decided once from the device and the data.

On a CUDA GPU every part of the fast path is on by default: bf16 autocast, fused AdamW,
``torch.compile`` of the model (eager with one warning when compilation fails), the training
images held on the GPU as uint8 and augmented there, and a non-finite-loss guard that reads the
loss on the host only every N steps and before every checkpoint. On a CPU the defaults are those
that keep the numbers of float32 eager training and cost nothing there: a CPU does not queue
work, so a per-step check of the loss is free, and the GPU-resident path would only copy the data.

:func:`resolve_fast_defaults` is a pure function of what it is told (no CUDA query), so the
GPU defaults are tested on machines without a GPU; :func:`device_facts` asks torch for the facts.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_GPU_DATA_MAX_MB",
    "GPU_DATA_MEMORY_SHARE",
    "SWITCHES",
    "FastPath",
    "add_fast_path_arguments",
    "device_facts",
    "fast_path_from_args",
    "resolve_fast_defaults",
    "resolve_switch",
]

Switch = Literal["auto", "on", "off"]
SWITCHES: tuple[str, ...] = ("auto", "on", "off")
#: Largest dataset (decoded uint8 bytes, MiB) the GPU-resident path takes by default.
DEFAULT_GPU_DATA_MAX_MB = 4096
#: Share of the free device memory the resident images may take (the model needs the rest).
GPU_DATA_MEMORY_SHARE = 0.25


@dataclass(frozen=True)
class FastPath:
    """The resolved choices of a run (what ``config.yaml`` records).

    Attributes:
        precision: Lightning precision, e.g. ``"bf16-mixed"`` or ``"32-true"``.
        compile: Compile the model with ``torch.compile``.
        fused_adamw: Use the fused AdamW kernel.
        gpu_data: Keep the training images on the device and augment them there.
        check_loss_every_n_steps: Read the accumulated non-finite-loss flag every N steps (and
            before every checkpoint); 1 checks every step, before its backward pass.
        reasons: Why each "auto" choice came out as it did, by field name.
    """

    precision: str
    compile: bool
    fused_adamw: bool
    gpu_data: bool
    check_loss_every_n_steps: int
    reasons: Mapping[str, str]

    def as_config(self) -> dict[str, Any]:
        """The choices as plain config values (``"on"``/``"off"`` for the switches)."""
        values = asdict(self)
        values.pop("reasons")
        for key in ("compile", "fused_adamw", "gpu_data"):
            values[key] = "on" if values[key] else "off"
        return values


def resolve_switch(value: str | bool | None, name: str) -> Switch:
    """``"auto"``, ``"on"`` or ``"off"`` from a switch value (None is ``"auto"``, bools are
    ``"on"``/``"off"``).

    Raises:
        ValueError: For any other value, naming ``name``.
    """
    if value is None:
        return "auto"
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value in SWITCHES:
        return value  # type: ignore[return-value]
    raise ValueError(f"{name} must be one of {list(SWITCHES)}, got {value!r}")


def resolve_fast_defaults(
    device_type: str,
    dataset_bytes: int | None,
    free_memory: int | None,
    *,
    bf16_supported: bool = True,
    compile_supported: bool = True,
    precision: str | None = None,
    compile: str | bool | None = "auto",
    fused_adamw: str | bool | None = "auto",
    gpu_data: str | bool | None = "auto",
    gpu_data_max_mb: float = DEFAULT_GPU_DATA_MAX_MB,
    log_every_n_steps: int = 50,
    check_loss_every_n_steps: int | None = None,
) -> FastPath:
    """Resolves the fast-path choices of a run: given values are kept, "auto" follows the device.

    ========================  ==================================  ===========================
    choice                    ``"cuda"``                          ``"cpu"`` (and ``"mps"``)
    ========================  ==================================  ===========================
    precision                 ``bf16-mixed`` (``32-true`` on      ``32-true``
                              GPUs without bf16)
    compile                   on (when torch.compile can run)     off (minutes of C++ builds)
    fused_adamw               on                                  off
    gpu_data                  on when the decoded uint8 images    off (already in host memory)
                              fit ``gpu_data_max_mb`` and a
                              quarter of the free memory
    check_loss_every_n_steps  ``log_every_n_steps``               1 (a read costs nothing)
    ========================  ==================================  ===========================

    Args:
        device_type: ``torch.device(...).type`` of the training device (``"cuda"``, ``"cpu"``).
        dataset_bytes: Size of the training images decoded to uint8 at the model's input size
            (N * C * H * W), None when unknown (then ``gpu_data="auto"`` stays off).
        free_memory: Free device memory in bytes (``torch.cuda.mem_get_info()[0]``), None when
            unknown.
        bf16_supported: Whether the GPU computes in bf16 (Ampere and newer).
        compile_supported: Whether ``torch.compile`` can run in this interpreter.
        precision: A Lightning precision, or None/``"auto"`` for the device's default.
        compile: ``"auto"``/None, ``"on"``/True or ``"off"``/False; likewise ``fused_adamw`` and
            ``gpu_data``.
        fused_adamw: See ``compile``.
        gpu_data: See ``compile``. ``"on"`` is refused when the images are known not to fit the
            free memory.
        gpu_data_max_mb: Largest dataset (MiB) ``gpu_data="auto"`` keeps on the device.
        log_every_n_steps: The run's logging interval.
        check_loss_every_n_steps: Given interval of the loss check, or None for the device's.

    Returns:
        The resolved :class:`FastPath`.

    Raises:
        ValueError: For an unknown switch value, a non-positive interval, or ``gpu_data="on"``
            with images larger than the free memory.
    """
    if not isinstance(device_type, str) or not device_type:
        raise TypeError(f"device_type must be a device type string, got {device_type!r}")
    for name, count in (
        ("dataset_bytes", dataset_bytes),
        ("free_memory", free_memory),
    ):
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise TypeError(f"{name} must be an int number of bytes or None, got {count!r}")
    switches = {
        "compile": resolve_switch(compile, "compile"),
        "fused_adamw": resolve_switch(fused_adamw, "fused_adamw"),
        "gpu_data": resolve_switch(gpu_data, "gpu_data"),
    }
    for name, interval in (
        ("log_every_n_steps", log_every_n_steps),
        ("check_loss_every_n_steps", check_loss_every_n_steps),
    ):
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int) or interval < 1
        ):
            raise ValueError(f"{name} must be a positive int, got {interval!r}")
    cuda = device_type == "cuda"
    reasons: dict[str, str] = {}

    if precision is None or precision == "auto":
        precision = "bf16-mixed" if cuda and bf16_supported else "32-true"
        reasons["precision"] = (
            "bf16 autocast on a bf16-capable GPU"
            if precision == "bf16-mixed"
            else f"float32 on {device_type}" + (" without bf16" if cuda else "")
        )

    def auto(name: str, on: bool, why_on: str, why_off: str) -> bool:
        if switches[name] != "auto":
            return switches[name] == "on"
        reasons[name] = why_on if on else why_off
        return on

    compile_on = auto(
        "compile",
        cuda and compile_supported,
        "torch.compile on CUDA",
        "torch.compile cannot run in this interpreter"
        if cuda
        else f"eager on {device_type} (compiling takes minutes of C++ code generation)",
    )
    fused_on = auto(
        "fused_adamw", cuda, "one AdamW kernel per step on CUDA", f"for-each AdamW on {device_type}"
    )
    limit = int(gpu_data_max_mb * 2**20)
    fits = dataset_bytes is not None and dataset_bytes <= limit
    if fits and free_memory is not None:
        fits = dataset_bytes is not None and dataset_bytes <= free_memory * GPU_DATA_MEMORY_SHARE
    if switches["gpu_data"] == "on" and (
        dataset_bytes is not None and free_memory is not None and dataset_bytes > free_memory
    ):
        raise ValueError(
            f"gpu_data='on' needs {dataset_bytes / 2**20:.0f} MiB of device memory for the "
            f"decoded images, but only {free_memory / 2**20:.0f} MiB are free; use "
            "gpu_data='off' (host loader) or fewer images"
        )
    gpu_data_on = auto(
        "gpu_data",
        cuda and fits,
        "the decoded uint8 images fit on the GPU",
        (
            "the decoded images are larger than the limit (or a quarter of the free memory)"
            if cuda
            else f"the images are in host memory already on {device_type}"
        ),
    )
    if check_loss_every_n_steps is None:
        check_loss_every_n_steps = log_every_n_steps if cuda else 1
        reasons["check_loss_every_n_steps"] = (
            "read the loss flag at logging intervals (no per-step host sync)"
            if cuda
            else "a per-step check costs nothing on a CPU"
        )
    return FastPath(
        precision=precision,
        compile=compile_on,
        fused_adamw=fused_on,
        gpu_data=gpu_data_on,
        check_loss_every_n_steps=check_loss_every_n_steps,
        reasons=reasons,
    )


def device_facts(device_type: str) -> dict[str, Any]:
    """What :func:`resolve_fast_defaults` needs to know about this machine's ``device_type``:
    ``bf16_supported``, ``compile_supported`` and ``free_memory`` (bytes, None off CUDA)."""
    import torch

    from ssl_mae.training.precision import compile_available

    facts: dict[str, Any] = {
        "bf16_supported": False,
        "compile_supported": compile_available(),
        "free_memory": None,
    }
    if device_type == "cuda" and torch.cuda.is_available():
        facts["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
        facts["free_memory"] = int(torch.cuda.mem_get_info()[0])
    return facts


def add_fast_path_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--precision`` and the ``--compile``/``--fused-adamw``/``--gpu-data`` switches
    (``"auto"``: on for CUDA, off elsewhere; see :func:`resolve_fast_defaults`)."""
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16-mixed", "32-true"),
        default="auto",
        help="auto: bf16 on CUDA",
    )
    for switch in ("compile", "fused-adamw", "gpu-data"):
        parser.add_argument(f"--{switch}", choices=SWITCHES, default="auto", help="auto: on CUDA")


def fast_path_from_args(args: argparse.Namespace, device_type: str, data_bytes: int) -> FastPath:
    """:func:`resolve_fast_defaults` for the options :func:`add_fast_path_arguments` added, on
    ``device_type`` (its bf16 and compile support and free memory from :func:`device_facts`)
    with ``data_bytes`` of decoded uint8 training images."""
    facts = device_facts(device_type)
    return resolve_fast_defaults(
        device_type,
        data_bytes,
        facts["free_memory"],
        bf16_supported=facts["bf16_supported"],
        compile_supported=facts["compile_supported"],
        precision=args.precision,
        compile=args.compile,
        fused_adamw=args.fused_adamw,
        gpu_data=args.gpu_data,
    )
