"""The tensor operations that make the host wait for the device, shared by the sync tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: Operations that read a tensor's value on the host (on a GPU each waits for its queue to
#: drain), with the name a recorder reports.
HOST_READS: dict[Callable[..., Any], str] = {
    Tensor.item: "item",
    Tensor.tolist: "tolist",
    Tensor.__bool__: "__bool__",
    Tensor.__int__: "__int__",
    Tensor.__float__: "__float__",
    Tensor.__index__: "__index__",
    Tensor.cpu: "cpu",
    Tensor.numpy: "numpy",
    Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
}
