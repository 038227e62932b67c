"""The ONNX Runtime encoder and decoder step compute what PyTorch computes: same features, same
steps, same captions; they can be turned off, and when unavailable PyTorch is used."""
from __future__ import annotations

import pytest
import torch

from captioner.errors import CaptionerError
from captioner.pipeline import Captioner
from captioner.runtime import onnx_runtime
from oracles.photos import make_photo


def test_onnx_features_equal_pytorch_features(tiny_model_dir):
    cap = Captioner.load(tiny_model_dir)
    assert cap.onnx_encoder is not None, onnx_runtime.last_error
    x = torch.randn(3, 3, cap.cfg.input_size, cap.cfg.input_size)
    with torch.inference_mode():
        ref = cap.model.encoder(x)
    got = cap.onnx_encoder(x)
    assert got.shape == ref.shape == (3, cap.cfg.grid, cap.cfg.grid, ref.shape[-1])
    assert torch.allclose(got, ref, atol=1e-3, rtol=1e-3)
    assert cap.onnx_encoder.path.parent == onnx_runtime.cache_dir()


def test_onnx_and_pytorch_encoders_give_the_same_captions(tiny_model_dir, tmp_path):
    photos = [make_photo(tmp_path / f"p{i}.jpg", 120 + 40 * i, 90, seed=i) for i in range(3)]
    fast, plain = Captioner.load(tiny_model_dir), Captioner(Captioner.load(tiny_model_dir).model, onnx=False)
    assert plain.onnx_encoder is None
    for a, b in zip(fast.caption_many(photos, beam_size=3), plain.caption_many(photos, beam_size=3)):
        assert [c.ids for c in a.candidates] == [c.ids for c in b.candidates]


def test_onnx_can_be_disabled(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("CAPTIONER_ONNX", "0")
    assert Captioner.load(tiny_model_dir).onnx_encoder is None
    with pytest.raises(CaptionerError, match="CAPTIONER_ONNX=0"):
        Captioner(Captioner.load(tiny_model_dir).model, onnx=True)


def test_onnx_decoder_step_equals_the_pytorch_step(tiny_model_dir):
    from captioner.runtime.fused_decoder import InferenceDecoder

    cap = Captioner.load(tiny_model_dir)
    onnx_dec = cap.fast_decoder
    assert isinstance(onnx_dec, onnx_runtime.OnnxStepDecoder), onnx_runtime.last_error
    fast = InferenceDecoder(cap.model.decoder)
    torch.manual_seed(0)
    feats = fast.flatten(torch.randn(5, cap.cfg.grid, cap.cfg.grid, cap.model.decoder.attention.feature_proj.in_features))
    with torch.inference_mode():
        proj = fast.project(feats)
        h, c = fast.init_state(feats)
        words = torch.tensor([1, 4, 5, 6, 7])
        for a, b in zip(fast.step(feats, proj, words, h, c), onnx_dec.step(feats, proj, words, h, c)):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
