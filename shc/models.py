"""Backbones, the hashing network and the stage-1 classifier.

A small timm-style registry: ``create_backbone(name, in_channels=..., small_input=..., pretrained=...)``
returns a module mapping images to a flat feature vector and carrying ``num_features`` (``feature_map=True``: the
last spatial map (B, C, H, W), or for the ViT its tokens (B, P + 1, D)).
Heads are plain modules on top: ``HashNet(backbone, bits)`` and ``Classifier(backbone, num_classes)``.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
from torch import nn

__all__ = ["BACKBONES", "register_backbone", "create_backbone", "list_backbones", "CompactCNN",
           "HashNet", "Classifier", "find_pretrained_weights", "check_backbone_input",
           "materialize"]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    def wrap(fn):
        BACKBONES[name] = fn
        return fn
    return wrap


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def min_input_size(name: str) -> int:
    """The smallest input side a backbone takes: it halves its input three times (the compact CNN's pools, a
    ResNet's strided stages after the small-input stem; its ImageNet stem only serves inputs above 64 px)."""
    return 8


def create_backbone(name: str, *, in_channels: int = 3, small_input: bool = False,
                    pretrained: str | None = None, feature_map: bool = False) -> nn.Module:
    """Build a registered backbone. ``pretrained``: a local weights file, or None to look in torchvision's cache.
    ``feature_map``: the last spatial map (B, num_features, H, W) instead of the pooled vector."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    net = BACKBONES[name](in_channels=in_channels, small_input=small_input, pretrained=pretrained)
    if feature_map:
        net.feature_map = True
        net.num_features = net.map_channels
    return net


# --------------------------------------------------------------------------------------------- compact CNN
class CompactCNN(nn.Module):
    """Three conv-BN-ReLU-maxpool blocks (16/32/64 channels), then a 3×3 average grid flattened (576 features).

    Keeping a coarse spatial grid instead of a global pool helps on small centred images (Fashion-MNIST);
    about 2k training images/s on one CPU core.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        layers, c_in = [], in_channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.map_channels = c_in
        self.num_features = c_in * 9
        self.feature_map = False

    def forward(self, x):
        grid = self.pool(self.features(x))
        return grid if self.feature_map else grid.flatten(1)


@register_backbone("compact")
def compact(*, in_channels: int = 1, small_input: bool = True, pretrained: str | None = None) -> nn.Module:
    if pretrained:
        raise ValueError("the compact backbone has no pretrained weights; drop --pretrained or pick a resnet")
    return CompactCNN(in_channels)


# --------------------------------------------------------------------------------------------- ResNets
_warned_no_weights: set[str] = set()


def find_pretrained_weights(arch: str) -> str | None:
    """torchvision's cached ImageNet file for ``arch`` under $TORCH_HOME (torch.hub.get_dir()), if present."""
    import torchvision
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return path if os.path.isfile(path) else None


class _ResNetFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = self.map_channels = net.fc.in_features
        self.feature_map = False
        net.fc = nn.Identity()

    def forward(self, x):
        if not self.feature_map:
            return self.net(x)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


def _load_pretrained(net: nn.Module, arch: str, pretrained: str | None, head: str) -> str | None:
    """Load ``pretrained`` (or torchvision's cached ImageNet file for ``arch``) into ``net``, all but its
    classifier (keys starting with ``head``); warn once per arch when there is none. Returns the file used."""
    path = pretrained or find_pretrained_weights(arch)
    if pretrained and not os.path.isfile(pretrained):
        raise ValueError(f"pretrained weights file not found: {pretrained}")
    if path:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or foreign file: say which one
            raise ValueError(f"cannot read pretrained weights {path}: {exc}") from exc
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith(head)]:
            raise ValueError(f"{path} does not hold {arch} weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
    elif arch not in _warned_no_weights:
        _warned_no_weights.add(arch)
        warnings.warn(f"no ImageNet weights for {arch} (pass --pretrained PATH or put "
                      f"{arch} weights in {torch.hub.get_dir()}/checkpoints); training from scratch",
                      stacklevel=4)
    return path


def _resnet(arch: str, *, in_channels: int, small_input: bool, pretrained: str | None) -> nn.Module:
    import torchvision
    net = getattr(torchvision.models, arch)(weights=None)
    path = _load_pretrained(net, arch, pretrained, head="fc.")
    conv1 = net.conv1
    if small_input or in_channels != 3:
        # 28–32 px inputs: a 3×3 stride-1 stem and no max-pool keep the 4 stages' spatial resolution useful.
        k, s, p = (3, 1, 1) if small_input else (7, 2, 3)
        new = nn.Conv2d(in_channels, 64, k, s, p, bias=False)
        if path and not small_input:
            # grey input: the sum over RGB filters responds to a grey image as the RGB net did
            with torch.no_grad():
                new.weight.copy_(conv1.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
        net.conv1 = new
        if small_input:
            net.maxpool = nn.Identity()
    return _ResNetFeatures(net)


for _arch in ("resnet18", "resnet34", "resnet50"):
    register_backbone(_arch)(lambda *, _a=_arch, **kw: _resnet(_a, **kw))


# --------------------------------------------------------------------------------------------- ViT
VIT_INPUT = (3, 224)  # channels, height = width: torchvision's ViT-B/32 takes nothing else


def check_backbone_input(name: str, channels: int, height: int, width: int | None = None) -> None:
    """ValueError when backbone ``name`` cannot take ``channels`` × ``height`` × ``width`` images (width: height)."""
    width = height if width is None else width
    if name == "vit_b_32" and (channels, height, width) != (VIT_INPUT[0], VIT_INPUT[1], VIT_INPUT[1]):
        raise ValueError(f"the vit_b_32 backbone takes 3x224x224 colour images only, got {channels}x{height}x{width} "
                         f"(pick compact or a resnet, or image files at crop_size=224)")


class _ViTFeatures(nn.Module):
    """torchvision's ViT-B/32 without its classifier: the class token's embedding (768 features), or as a feature
    map all P + 1 = 50 tokens (B, 50, 768), class token first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = self.map_channels = net.hidden_dim
        self.feature_map = False
        net.heads = nn.Identity()

    def forward(self, x):
        check_backbone_input("vit_b_32", *x.shape[1:])
        n = self.net
        patches = n._process_input(x)
        tokens = n.encoder(torch.cat([n.class_token.expand(len(x), -1, -1), patches], dim=1))
        return tokens if self.feature_map else tokens[:, 0]


@register_backbone("vit_b_32")
def vit_b_32(*, in_channels: int = 3, small_input: bool = False, pretrained: str | None = None) -> nn.Module:
    import torchvision
    if in_channels != VIT_INPUT[0] or small_input:
        raise ValueError("the vit_b_32 backbone takes 3x224x224 colour images only (pick compact or a resnet for "
                         "small or grey images)")
    net = torchvision.models.vit_b_32(weights=None)
    _load_pretrained(net, "vit_b_32", pretrained, head="heads.")
    return _ViTFeatures(net)


# --------------------------------------------------------------------------------------------- heads
class HashNet(nn.Module):
    """backbone + head. The default head is Linear(feat, bits) at N(0, 0.01²) weights and zero bias (the paper's
    init); a training method may bring its own (``shc.methods``).

    forward returns u, the code values (pre-tanh for the center loss); codes are sign(u) with sign(0) = +1. A
    method's head may return ``(u, extra...)`` in training mode.
    """

    def __init__(self, backbone: nn.Module, bits: int, head: nn.Module | None = None):
        super().__init__()
        if not isinstance(bits, int) or bits < 1:
            raise ValueError(f"bits must be a positive int, got {bits!r}")
        from shc.methods.base import linear_head
        self.backbone = backbone
        self.bits = bits
        self.head = head if head is not None else linear_head(backbone.num_features, bits)

    def forward(self, x):
        return self.head(self.backbone(x))


class Classifier(nn.Module):
    """backbone + Linear(feat, num_classes): the stage-1 network."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def materialize(model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """``model`` with its lazy layers sized (a head whose input size follows from the image size: VTDH's) by one
    dry forward of a zero batch of ``input_shape`` (C, H, W) images in eval mode, so that the optimiser, DDP and
    torch.compile see every parameter; deterministic (the layers initialise here, at build time). A head that
    cannot use the backbone's output raises its ValueError here, before any training."""
    from torch.nn.modules.lazy import LazyModuleMixin

    if not any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules()):
        return model
    training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *input_shape))
    return model.train(training)
