"""Backbone registry, heads, pretrained-weight handling."""
import warnings

import pytest
import torch
import torchvision

import shc.models as models
from shc.models import Classifier, HashNet, create_backbone, list_backbones


def test_registry_lists_backbones():
    assert {"compact", "resnet18", "resnet34", "resnet50"} <= set(list_backbones())
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("vgg")


@pytest.mark.parametrize("name,channels,size", [("compact", 1, 28), ("compact", 3, 32), ("resnet18", 1, 28)])
def test_small_input_shapes(name, channels, size):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backbone = create_backbone(name, in_channels=channels, small_input=True)
    net = HashNet(backbone, 16).eval()
    with torch.no_grad():
        assert net(torch.randn(2, channels, size, size)).shape == (2, 16)
        assert Classifier(backbone, 7).eval()(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_hash_head_init():
    torch.manual_seed(0)
    net = HashNet(create_backbone("compact", in_channels=1), 64)
    w = net.head.weight
    assert torch.all(net.head.bias == 0)
    assert abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001
    with pytest.raises(ValueError, match="bits"):
        HashNet(create_backbone("compact", in_channels=1), 0)


def test_missing_weights_warn_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_warned_no_weights", set())
    with pytest.warns(UserWarning, match="training from scratch"):
        create_backbone("resnet18")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_backbone("resnet18")  # said once is enough


def test_local_weights_file_is_loaded(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    backbone = create_backbone("resnet18", pretrained=str(path))
    assert torch.equal(backbone.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    grey = create_backbone("resnet18", in_channels=1, pretrained=str(path))
    assert torch.allclose(grey.net.conv1.weight[:, 0], reference.conv1.weight.sum(1))  # grey = R = G = B


def test_torch_home_cache_is_found(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached)
    assert models.find_pretrained_weights("resnet18") == str(cached)


def test_bad_weights(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        create_backbone("resnet18", pretrained=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        create_backbone("resnet18", pretrained=str(junk))
    other = tmp_path / "other.pth"
    torch.save({"foo": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="does not hold"):
        create_backbone("resnet18", pretrained=str(other))
    with pytest.raises(ValueError, match="no pretrained"):
        create_backbone("compact", pretrained=str(other))
