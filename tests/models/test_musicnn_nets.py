"""Network-level properties of the musicnn port that do not need the real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from storycue.errors import ModelMismatchError
from storycue.models.musicnn.nets import BN_EPS, MusicnnNet, VggNet, _same_pad


def randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))  # signs mixed
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.1)
    return net.eval()


def test_tensorflow_same_padding_puts_the_extra_pad_at_the_end() -> None:
    assert _same_pad(128) == (63, 64)
    assert _same_pad(64) == (31, 32)
    assert _same_pad(32) == (15, 16)
    assert _same_pad(3) == (1, 1)


def test_batchnorm_epsilon_is_tensorflows() -> None:
    net = MusicnnNet()
    eps = {m.eps for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert eps == {BN_EPS} == {1e-3}


def test_fused_frontend_equals_conv_relu_bn_then_max() -> None:
    net = randomized(MusicnnNet())
    assert isinstance(net, MusicnnNet)
    x = torch.randn(2, 187, 96)
    with torch.inference_mode():
        h = net.input_bn(x.unsqueeze(1))
        naive = []
        for conv, bn in zip(net.timbral, net.timbral_bn, strict=True):
            naive.append(bn(F.relu(conv(F.pad(h, (0, 0, 3, 3))))).amax(dim=3))
        for k, conv, bn in zip(net.TEMPORAL_KERNELS, net.temporal, net.temporal_bn, strict=True):
            b, a = _same_pad(k)
            naive.append(bn(F.relu(conv(F.pad(h, (0, 0, b, a))))).amax(dim=3))
        front = torch.cat(naive, dim=1)
        out = net(x)
    # the front-end channels are the first 561 of the pooled features
    torch.testing.assert_close(out["max_pool"][:, :561], front.amax(dim=2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["mean_pool"][:, :561], front.mean(dim=2), atol=1e-5, rtol=1e-5)


def test_musicnn_output_shapes_and_variable_length() -> None:
    net = randomized(MusicnnNet())
    with torch.inference_mode():
        out = net(torch.randn(3, 187, 96))
        longer = net(torch.randn(1, 300, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (3, 50), "tags": (3, 50), "mean_pool": (3, 753), "max_pool": (3, 753),
        "penultimate": (3, 200),
    }  # fmt: skip
    assert longer["tags"].shape == (1, 50)
    assert ((out["tags"] > 0) & (out["tags"] < 1)).all()


def test_vgg_pool5_is_2x1x128() -> None:
    net = randomized(VggNet())
    assert isinstance(net, VggNet)
    assert net.pool5_shape == (2, 1, 128)
    with torch.inference_mode():
        out = net(torch.randn(2, 187, 96))
    assert out["pool5"].shape == (2, 256)


def tf_variables(net: MusicnnNet) -> dict[str, np.ndarray]:
    """Fake TensorFlow variables with musicnn's names and TF layouts (zeros)."""
    names: dict[str, tuple[int, ...]] = {}
    bn_sizes = [1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200]
    for i, n in enumerate(bn_sizes):
        scope = "batch_normalization" + (f"_{i}" if i else "")
        for v in ("gamma", "beta", "moving_mean", "moving_variance"):
            names[f"{scope}/{v}"] = (n,)
    kernels = [(7, 38, 1, 204), (7, 67, 1, 204), (128, 1, 1, 51), (64, 1, 1, 51),
               (32, 1, 1, 51), (7, 561, 1, 64), (7, 64, 1, 64), (7, 64, 1, 64)]  # fmt: skip
    for i, k in enumerate(kernels):
        scope = "conv2d" + (f"_{i}" if i else "")
        names[f"{scope}/kernel"] = k
        names[f"{scope}/bias"] = (k[-1],)
    names.update({"dense/kernel": (1506, 200), "dense/bias": (200,)})
    names.update({"dense_1/kernel": (200, 50), "dense_1/bias": (50,)})
    return {n: np.zeros(s, np.float32) for n, s in names.items()}


def test_loading_checks_names_and_shapes() -> None:
    net = MusicnnNet()
    good = tf_variables(net)
    good["conv2d_5/kernel"][2, 10, 0, 3] = 1.5  # tap 2, input channel 10, output 3
    good["dense/kernel"][7, 4] = 2.0  # input 7 -> unit 4
    net.load_tf_weights(good)
    assert net.mid[0].get_parameter("weight")[3, 10, 2].item() == 1.5
    assert net.dense.weight[4, 7].item() == 2.0

    missing = dict(good)
    del missing["dense_1/bias"]
    with pytest.raises(ModelMismatchError, match="dense_1/bias"):
        MusicnnNet().load_tf_weights(missing)
    extra = dict(good, **{"conv2d_8/kernel": np.zeros(3, np.float32)})
    with pytest.raises(ModelMismatchError, match="does not use"):
        MusicnnNet().load_tf_weights(extra)
    wrong = dict(good, **{"dense/kernel": np.zeros((1500, 200), np.float32)})
    with pytest.raises(ModelMismatchError, match="shape"):
        MusicnnNet().load_tf_weights(wrong)
    with pytest.raises(ModelMismatchError):
        VggNet().load_tf_weights(good)


def test_vgg_fused_pooling_equals_conv_relu_bn_then_pool() -> None:
    net = randomized(VggNet(), seed=3)
    assert isinstance(net, VggNet)
    x = torch.randn(2, 187, 96)
    with torch.inference_mode():
        h = net.input_bn(x.unsqueeze(1))
        for conv, bn, (k, s) in zip(net.convs, net.bns, net.POOLS, strict=True):
            h = F.max_pool2d(bn(F.relu(conv(h))), kernel_size=k, stride=s)
        out = net(x)
    torch.testing.assert_close(out["pool5"], h.permute(0, 2, 3, 1).flatten(1))
