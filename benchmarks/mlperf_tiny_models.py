"""The four MLPerf Tiny reference models as torch modules, with BatchNorm and random weights.

Architectures from mlcommons/tiny's training code (benchmark/training/...):
- IC, image_classification/keras_model.py `resnet_v1_eembc`: ResNet-8 on 32x32x3 - a 3x3 conv
  and three stacks of two 3x3 convs with a residual add (the 2nd and 3rd stack stride 2 with a
  1x1 stride-2 conv on the shortcut), 16/32/64 filters (the v0.5-v1.x reference; a later commit
  made the default 26), BatchNorm + ReLU, 8x8 average pool, dense 10, softmax. 12.5 M MACs.
- KWS, keyword_spotting/keras_model.py (DS-CNN): 49x10x1 MFCCs, a 10x4 stride-2 conv with 64
  filters, four depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, 64 channels, each
  BatchNorm + ReLU), average pool over (24, 5), dense 12, softmax. 2.66 M MACs.
- VWW, visual_wake_words/vww_model.py `mobilenet_v1`: MobileNetV1 alpha 0.25 on 96x96x3 - a
  3x3 stride-2 conv with 8 filters, 13 depthwise-separable blocks (16, 32, 32, 64, 64, 128 x6,
  256, 256 channels; stride 2 at 32, 64, 128 and the first 256), average pool, dense 2,
  softmax. 7.49 M MACs.
- AD, anomaly_detection/keras_model.py: the 640-128-128-128-128-8-128-128-128-128-640 dense
  autoencoder, BatchNorm + ReLU after every layer but the last. 0.26 M MACs.

Keras 'same' padding is written as torch padding: symmetric where Keras' is (stride 1, odd
kernels), and for KWS's 10x4 stride-2 conv as Keras pads it, asymmetrically, with
`nn.ZeroPad2d((1, 1, 4, 5))` (which torch.onnx exports as a Pad, at opset >= 11 with its pads
computed by a constant subgraph). The stride-2 3x3 convs of IC and VWW pad (1, 1) here where
Keras pads (0, 1): same output size and MACs, windows shifted by one pixel (random weights:
no accuracy to lose). Dropout layers of the training code are inference no-ops, left out.

`quick=True` gives tiny variants of the same structure (a few k MACs) for tests.
"""
from __future__ import annotations

import torch
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class ResNet8(nn.Module):
    def __init__(self, filters: int = 16, classes: int = 10):
        super().__init__()
        f = filters
        self.stem = nn.Sequential(nn.Conv2d(3, f, 3, padding=1), _bn(f), nn.ReLU())
        self.stacks = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        for cin, cout, stride in ((f, f, 1), (f, 2 * f, 2), (2 * f, 4 * f, 2)):
            self.stacks.append(nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), _bn(cout), nn.ReLU(),
                                             nn.Conv2d(cout, cout, 3, 1, 1), _bn(cout)))
            self.shortcuts.append(nn.Identity() if stride == 1 else nn.Conv2d(cin, cout, 1, stride))
        self.head = nn.Linear(4 * f, classes)

    def forward(self, x):
        x = self.stem(x)
        for stack, short in zip(self.stacks, self.shortcuts):
            x = torch.relu(short(x) + stack(x))
        x = nn.functional.avg_pool2d(x, x.shape[-1])
        return torch.softmax(self.head(torch.flatten(x, 1)), 1)


def _dw_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), _bn(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, 1), _bn(cout), nn.ReLU())


class DSCNN(nn.Module):
    def __init__(self, filters: int = 64, classes: int = 12, pool=(24, 5)):
        super().__init__()
        self.stem = nn.Sequential(nn.ZeroPad2d((1, 1, 4, 5)), nn.Conv2d(1, filters, (10, 4), 2), _bn(filters),
                                  nn.ReLU())
        self.blocks = nn.Sequential(*[_dw_separable(filters, filters, 1) for _ in range(4)])
        self.pool = nn.AvgPool2d(pool)
        self.head = nn.Linear(filters, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return torch.softmax(self.head(torch.flatten(x, 1)), 1)


class MobileNetV1(nn.Module):
    # (output channels, stride) of the 13 depthwise-separable blocks at alpha = 1, divided by 32
    BLOCKS = ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (16, 1), (16, 1), (16, 1), (16, 1),
              (32, 2), (32, 1))

    def __init__(self, base: int = 8, classes: int = 2, blocks: int = 13):
        super().__init__()
        layers = [nn.Conv2d(3, base, 3, 2, 1), _bn(base), nn.ReLU()]
        c = base
        for mult, stride in self.BLOCKS[:blocks]:
            layers.append(_dw_separable(c, base * mult, stride))
            c = base * mult
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.avg_pool2d(x, x.shape[-1])
        return torch.softmax(self.head(torch.flatten(x, 1)), 1)


class AutoEncoder(nn.Module):
    def __init__(self, inputs: int = 640, hidden: int = 128, code: int = 8):
        super().__init__()
        sizes = [inputs] + [hidden] * 4 + [code] + [hidden] * 4
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        layers.append(nn.Linear(hidden, inputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm with random running statistics and affine parameters (a fresh one is an
    identity at inference, which would let a build skip it)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


# name -> (constructor, input shape (batch 1, NCHW), constructor kwargs of the quick variant)
MODELS = {
    "IC": (ResNet8, (1, 3, 32, 32), {"filters": 4}, (1, 3, 16, 16)),
    "KWS": (DSCNN, (1, 1, 49, 10), {"filters": 8}, (1, 1, 49, 10)),
    "VWW": (MobileNetV1, (1, 3, 96, 96), {"base": 4, "blocks": 6}, (1, 3, 32, 32)),
    "AD": (AutoEncoder, (1, 640), {"inputs": 64, "hidden": 16, "code": 4}, (1, 64)),
}


def model(name: str, quick: bool = False, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """(the model in eval mode with seeded random weights, its input shape)."""
    ctor, shape, small, quick_shape = MODELS[name]
    torch.manual_seed(seed)
    m = randomize_batchnorm(ctor(**small) if quick else ctor(), seed)
    return m.eval(), (quick_shape if quick else shape)


def export_onnx(name: str, path, opset: int, quick: bool = False, seed: int = 0) -> tuple[int, ...]:
    """Export model `name` with torch.onnx (the TorchScript exporter) at `opset`; returns the input shape."""
    m, shape = model(name, quick, seed)
    torch.onnx.export(m, (torch.zeros(shape),), str(path), dynamo=False, opset_version=opset,
                      input_names=["input"], output_names=["output"])
    return shape
