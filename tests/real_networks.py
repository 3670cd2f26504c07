"""Architectures ML teams ship, built from torch.nn (random weights, seeded): the test matrix of
tests/test_real_networks.py. Not a test module itself (no test_ prefix)."""

from __future__ import annotations

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    """A batch_first LSTM / GRU / RNN over (steps, features), classified from its last state."""

    def __init__(self, cell: str = "lstm", features: int = 4, hidden: int = 8, classes: int = 3, **options):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](features, hidden, batch_first=True, **options)
        self.head = nn.Linear(hidden * (2 if options.get("bidirectional") else 1), classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class SequenceTransformer(nn.Module):
    """Two pre-norm transformer encoder layers over (tokens, features), mean-pooled."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 3):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 16, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


class TinyViT(nn.Module):
    """Patch embedding, class token, one transformer block (MultiheadAttention, LayerNorm, GELU)."""

    def __init__(self, patch: int = 4, dim: int = 16, heads: int = 2, classes: int = 10):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.block = nn.TransformerEncoderLayer(dim, heads, 32, dropout=0.0, activation="gelu", batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.block(tokens)[:, 0]))


class UNet(nn.Module):
    """Down-sampling conv, ConvTranspose up-sampling, a skip connection: per-pixel outputs."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.out = nn.Conv2d(5, 2, 1)

    def forward(self, x):
        return self.out(torch.cat([self.up(torch.relu(self.down(x))), x], 1)).flatten(1)


def mobilenet_block() -> nn.Module:
    """BatchNorm, Hardswish, depthwise conv, Hardsigmoid, global pooling (MobileNetV3 layers)."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardswish(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardsigmoid(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def activation_mlp(activation: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), activation, nn.Linear(16, 16), activation, nn.Linear(16, 3))


def _randomised(module: nn.Module, seed: int, weight_scale: float = 3.0) -> nn.Module:
    """Seeded weights; `weight_scale` x the default init so that decisions vary over [-1, 1]."""
    torch.manual_seed(seed)
    module = module.eval()
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.mul_(weight_scale)
        if isinstance(m, nn.RNNBase):
            with torch.no_grad():
                for pname, param in m.named_parameters():
                    if pname.startswith("weight_ih"):
                        param.mul_(weight_scale)
        if isinstance(m, nn.PReLU):  # a slope per channel
            with torch.no_grad():
                m.weight.uniform_(0.05, 0.5)
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


class Upsampler(nn.Module):
    """Conv, nearest and bilinear up-sampling (Resize), reflect padding, a mean over W (ReduceMean)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pad = nn.ReflectionPad2d(1)
        self.head = nn.Linear(3 * 28, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        y = nn.functional.interpolate(self.pad(y), scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(y.mean(dim=3).flatten(1))


#: name -> (factory, per-sample input shape, evaluator ('torch': saferisk's graph, with gradients;
#: 'onnxruntime': forward passes only), whether certified bounds cover it)
ARCHITECTURES = {
    "lstm": (lambda: SequenceClassifier("lstm"), (5, 4), "torch", True),
    "gru": (lambda: SequenceClassifier("gru"), (5, 4), "torch", True),
    "rnn": (lambda: SequenceClassifier("rnn"), (5, 4), "torch", True),
    "bilstm-2layer": (lambda: SequenceClassifier("lstm", hidden=6, num_layers=2, bidirectional=True), (4, 4),
                      "torch", True),
    "relu-rnn": (lambda: SequenceClassifier("rnn", nonlinearity="relu"), (5, 4), "torch", True),
    "vit": (TinyViT, (1, 8, 8), "torch", True),
    "transformer": (SequenceTransformer, (4, 8), "torch", True),
    "unet": (UNet, (1, 8, 8), "torch", True),
    "upsampler": (Upsampler, (1, 8, 8), "torch", True),
    "mobilenet": (mobilenet_block, (1, 8, 8), "torch", True),
    "elu-mlp": (lambda: activation_mlp(nn.ELU()), (6,), "torch", True),
    "selu-mlp": (lambda: activation_mlp(nn.SELU()), (6,), "torch", True),
    "gelu-mlp": (lambda: activation_mlp(nn.GELU()), (6,), "torch", True),
    "softplus-mlp": (lambda: activation_mlp(nn.Softplus()), (6,), "torch", True),
    "mish-mlp": (lambda: activation_mlp(nn.Mish()), (6,), "torch", True),
    "relu6-mlp": (lambda: activation_mlp(nn.ReLU6()), (6,), "torch", True),
    "prelu-cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PReLU(4), nn.Flatten(), nn.Linear(256, 10)),
                  (1, 8, 8), "torch", True),
    "conv1d-pool": (lambda: nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                                          nn.AvgPool1d(2, stride=1), nn.Flatten(), nn.Linear(20, 3)), (2, 12),
                    "torch", True),
    "layernorm-mlp": (lambda: nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3)),
                      (6,), "torch", True),
    "groupnorm-cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                                            nn.Linear(144, 10)), (1, 8, 8), "torch", True),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...], str, bool]:
    """(module with seeded weights, per-sample input shape, evaluator, bounded)."""
    factory, shape, evaluator, bounded = ARCHITECTURES[name]
    return _randomised(factory(), seed), shape, evaluator, bounded


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm, identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def cifar_resnet18(width: int = 16, classes: int = 10, channels: int = 3) -> nn.Module:
    """ResNet-18 layout for 32x32 inputs (stages of 2 blocks at width, 2x, 4x, 8x): 0.7M
    parameters at width 16. Global average pooling makes it run on any input size."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(cin, width * mult, stride))
            cin = width * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)
