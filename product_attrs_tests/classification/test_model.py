"""The model's shape, freezing, and every way of loading weights (or saying why not)."""

from __future__ import annotations

import pytest
import torch

from product_attrs.classification.config import ConfigError
from product_attrs.classification.model import (
    MultiTaskClassifier,
    WeightsUnavailableError,
    build_model,
    load_pretrained,
    load_weights_file,
)

HEADS = {"article_type": 5, "master_category": 2}


def _tiny(backbone: str = "resnet18") -> MultiTaskClassifier:
    torch.manual_seed(0)
    return MultiTaskClassifier(backbone, HEADS, embedding_dim=16).eval()


def test_heads_and_normalised_embedding():
    model = _tiny()
    x = torch.randn(2, 3, 32, 32)
    emb, logits = model.forward_all(x)
    assert emb.shape == (2, 16)
    assert {k: v.shape for k, v in logits.items()} == {"article_type": (2, 5), "master_category": (2, 2)}
    assert torch.allclose(model.embed(x).norm(dim=1), torch.ones(2), atol=1e-5)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'alexnet'"):
        MultiTaskClassifier("alexnet", HEADS)


def test_freeze_stages_keeps_weights_and_batchnorm():
    model = _tiny()
    model.freeze_stages(2)
    model.train()
    stem, layer1 = model.backbone.stages[:2]
    assert not any(p.requires_grad for p in [*stem.parameters(), *layer1.parameters()])
    assert all(p.requires_grad for p in model.backbone.net.layer2.parameters())
    assert not model.backbone.net.bn1.training and model.backbone.net.layer2.training
    with pytest.raises(ConfigError, match="stages"):
        model.freeze_stages(99)


def test_weights_file_round_trip(tmp_path):
    model = _tiny()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh, source = build_model("resnet18", HEADS, embedding_dim=16, weights_file=str(path))
    x = torch.randn(2, 3, 32, 32)
    fresh.eval()
    assert source.startswith("file")
    for k, v in model(x).items():
        assert torch.equal(v, fresh(x)[k])


def test_classifier_weights_transfer_to_other_heads(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_tiny().state_dict(), path)
    other = MultiTaskClassifier("resnet18", {"article_type": 9}, embedding_dim=16)
    messages: list[str] = []
    load_weights_file(other, path, log=messages.append)
    assert torch.equal(other.backbone.net.conv1.weight, _tiny().backbone.net.conv1.weight)
    assert "did not fit" in messages[0]


def test_torchvision_backbone_file_loads(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = _tiny()
    load_weights_file(model, path)
    assert torch.equal(model.backbone.net.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)


def test_wrong_or_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_weights_file(_tiny(), tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="not a PyTorch state dict"):
        load_weights_file(_tiny(), junk)
    lite = tmp_path / "lite.pt"
    torch.save(_tiny("efficientnet_lite0").state_dict(), lite)
    with pytest.raises(WeightsUnavailableError, match="another backbone"):
        load_weights_file(_tiny(), lite)


def test_imagenet_required_but_unavailable_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    model = _tiny()
    with pytest.raises(WeightsUnavailableError, match="weights-file"):
        load_pretrained(model, "imagenet", allow_download=False)
    messages: list[str] = []
    assert load_pretrained(model, "auto", log=messages.append, allow_download=False).startswith("none")
    assert "from scratch" in messages[0]


def test_offline_efficientnet_lite0_is_imagenet_pretrained():
    model, source = build_model("efficientnet_lite0", HEADS, embedding_dim=16, pretrained="imagenet")
    assert "efficientnet-lite0 ImageNet" in source
    # The stem's BatchNorm statistics are ImageNet's, not the fresh 0/1.
    assert not torch.allclose(
        model.backbone.net._bn0.running_var, torch.ones_like(model.backbone.net._bn0.running_var)
    )
