"""Hand-written ResNet-18 backbones: 3-D (video) and 1-D (mel as an 80-channel signal).

Neither ever strides in time, so a 32-frame clip keeps 32 time steps. The 3-D net's
spatial stride is `output_stride` (4, 8, 16 or 32): stem /2, max-pool /2, then stages 2,
3 and 4 stride 2 only as far as the output stride asks for it. A stage with 0 blocks is
left out (small receptive fields for tiny test models); the spatial stride then drops
with it unless the output stride is 8.
"""
from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """ResNet basic block for any dimension: `conv`/`norm` are nn.Conv1d/BatchNorm1d or
    nn.Conv3d/BatchNorm3d; `stride` is an int or a per-dimension tuple."""

    def __init__(self, cin: int, cout: int, stride, conv: type[nn.Module], norm: type[nn.Module]):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        strided = any(v != 1 for v in stride) if isinstance(stride, tuple) else stride != 1
        if strided or cin != cout:
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride, bias=False), norm(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + skip)


def BasicBlock3d(cin: int, cout: int, spatial_stride: int) -> BasicBlock:
    """Video block: strides in space only, never in time."""
    return BasicBlock(cin, cout, (1, spatial_stride, spatial_stride), nn.Conv3d, nn.BatchNorm3d)


def BasicBlock1d(cin: int, cout: int, stride: int) -> BasicBlock:
    return BasicBlock(cin, cout, stride, nn.Conv1d, nn.BatchNorm1d)


def make_stages(width: int, blocks: tuple[int, ...], strides, block) -> tuple[nn.Sequential, int]:
    """ResNet stages: stage i has blocks[i] blocks of width*2^i channels, the first one strided.
    A stage with no blocks is left out (small test models). Returns (layers, out channels)."""
    layers, cin = [], width
    for i, (n, s) in enumerate(zip(blocks, strides)):
        if n == 0:
            continue
        cout = width * 2 ** i
        layers += [block(cin if j == 0 else cout, cout, s if j == 0 else 1) for j in range(n)]
        cin = cout
    return nn.Sequential(*layers), cin


def stage_strides(output_stride: int) -> list[int]:
    """Spatial strides of stages 1-4 for a given total output stride (stem+pool give 4)."""
    table = {4: [1, 1, 1, 1], 8: [1, 2, 1, 1], 16: [1, 2, 2, 1], 32: [1, 2, 2, 2]}
    if output_stride not in table:
        raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}")
    return table[output_stride]


class ResNet3d(nn.Module):
    """R3D-18 style video backbone: (B,3,T,H,W) -> (B, 8*width, T, H/os, W/os)."""

    def __init__(self, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2),
                 stem_kt: int = 3, output_stride: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (stem_kt, 7, 7), (1, 2, 2), (stem_kt // 2, 3, 3), bias=False),
            nn.BatchNorm3d(width), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.layers, self.out_channels = make_stages(width, blocks, stage_strides(output_stride), BasicBlock3d)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.stem(x))


class ResNet1d(nn.Module):
    """1-D ResNet-18 over the mel bands as channels: (B,n_mels,L) -> (B, 8*width, L/prod(strides))."""

    def __init__(self, n_mels: int = 80, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2),
                 strides: tuple[int, ...] = (1, 2, 1, 1)):
        super().__init__()
        self.input_bn = nn.BatchNorm1d(n_mels)   # log-mel dB values are far from unit scale
        self.stem = nn.Sequential(nn.Conv1d(n_mels, width, 7, 1, 3, bias=False),
                                  nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        self.layers, self.out_channels = make_stages(width, blocks, strides, BasicBlock1d)

    def forward(self, mel: Tensor) -> Tensor:
        return self.layers(self.stem(self.input_bn(mel)))
