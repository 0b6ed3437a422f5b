"""The model zoo's ssd_mobilenetv2_pt as a PyTorch network (reference-pipeline.md section 2).

Module names and layouts follow the zoo's PyTorch code (itself derived from qfgaohao's
pytorch-ssd) so that its checkpoints load with ``strict=True``:

- ``base_net``: MobileNetV2 ``features``, 19 modules. ``base_net.0`` and ``base_net.18``
  are ``Sequential(conv, bn, relu6)``; blocks 1..17 are inverted residuals whose layers sit
  flat in one ``conv`` Sequential (``conv.0`` expansion 1x1, ``conv.1`` BN, ``conv.2`` ReLU6,
  ``conv.3`` depthwise 3x3, ...).
- The zoo names its first source ``GraphPath(14, 'conv', 3)``: run ``base_net[14].conv[:3]``
  (the expansion of the first 160-channel block, 576 channels at 19x19), take that as a
  source, then run ``conv[3:]`` on it. The second source is the output of ``base_net``.
- ``extras``: four ``Sequential(conv1x1, ReLU, conv3x3 s2 p1, ReLU)`` with biases.
- ``classification_headers`` / ``regression_headers``: one plain ``Conv2d`` per source.

``num_classes`` always counts the background class (index 0): the COCO model has 81.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from evalkit.errors import InputError
from evalkit.models.priors import ZOO_PRIOR_SPECS, ssd_priors

# MobileNetV2 inverted-residual settings (expansion t, channels c, repeats n, first stride s).
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip
# The zoo's GraphPath(14, 'conv', 3): block 14, sub-Sequential 'conv', split after 3 layers.
SOURCE_BLOCK, SOURCE_SPLIT = 14, 3
# (hidden, out) channels of each extra block: 1x1 conv to hidden, 3x3 stride-2 conv to out.
ZOO_EXTRAS: tuple[tuple[int, int], ...] = ((512, 512), (256, 256), (256, 256), (64, 64))
# A small network for demos and fast tests: same topology and 3000 boxes, 8x (81 classes)
# to 16x (2 classes) fewer weights.
DEMO_WIDTH_MULT, DEMO_LAST_CHANNEL = 0.35, 128
DEMO_EXTRAS: tuple[tuple[int, int], ...] = ((64, 64), (32, 32), (32, 32), (16, 16))
PRIORS_PER_LOCATION = ZOO_PRIOR_SPECS[0].priors_per_location
INPUT_SIZE = 300
# Zoo decode variances (MOBILENET_CONFIG center_variance / size_variance).
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2

ChannelRule = Literal["divisible8", "zoo"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` as torchvision's MobileNetV2 does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    # Never round down by more than 10%.
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _scale(channels: int, width_mult: float, rule: ChannelRule) -> int:
    """Backbone channels for ``width_mult``; the zoo's own code truncates with int()."""
    if rule == "zoo":
        return int(channels * width_mult)
    return make_divisible(channels * width_mult)


def _conv_bn_relu6(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    """Bias-free conv, BatchNorm, ReLU6: the first and last layers of ``features``."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block with the zoo's flat ``conv`` Sequential (checkpoint key layout)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [
                nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


def mobilenetv2_features(
    width_mult: float = 1.0, last_channel: int | None = None, rule: ChannelRule = "divisible8"
) -> nn.Sequential:
    """MobileNetV2 ``features`` (19 modules); ``last_channel`` None keeps 1280 for width <= 1."""
    channels = _scale(32, width_mult, rule)
    if last_channel is None:
        last_channel = _scale(1280, max(1.0, width_mult), rule)
    layers: list[nn.Module] = [_conv_bn_relu6(3, channels, 3, 2)]
    for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
        out = _scale(c, width_mult, rule)
        for i in range(n):
            layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
            channels = out
    layers.append(_conv_bn_relu6(channels, last_channel, 1, 1))
    return nn.Sequential(*layers)


def _extra_block(inp: int, hidden: int, out: int) -> nn.Sequential:
    """One zoo extra layer: 1x1 conv + ReLU, 3x3 stride-2 pad-1 conv + ReLU, with biases."""
    return nn.Sequential(
        nn.Conv2d(inp, hidden, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(hidden, out, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
    )


class SSDMobileNetV2(nn.Module):
    """SSD on MobileNetV2; ``forward`` returns raw (logits (N,3000,C), offsets (N,3000,4))."""

    def __init__(
        self,
        num_classes: int,
        width_mult: float = 1.0,
        *,
        last_channel: int | None = None,
        extras: Sequence[tuple[int, int]] = ZOO_EXTRAS,
        channel_rule: ChannelRule = "divisible8",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"num_classes counts the background class and must be >= 2, got {num_classes}"
            )
        if len(extras) != len(ZOO_PRIOR_SPECS) - 2:
            # The priors fix six sources: two from the backbone, one per extra block.
            raise ValueError(f"expected {len(ZOO_PRIOR_SPECS) - 2} extra blocks, got {len(extras)}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        self.num_classes = num_classes
        self.width_mult = width_mult
        self.base_net = mobilenetv2_features(width_mult, last_channel, channel_rule)
        expansion, last = self._split_block()[0], list(self.base_net)[-1]
        last_conv = last[0] if isinstance(last, nn.Sequential) else None
        if not isinstance(expansion, nn.Conv2d) or not isinstance(last_conv, nn.Conv2d):
            raise TypeError("unexpected MobileNetV2 layout")
        block_out = last_conv.out_channels
        # The zoo writes round(576 * width_mult); reading the built layers agrees at width 1.0
        # and stays right for widths where that formula and the backbone's rounding disagree.
        sources = [expansion.out_channels, block_out]
        blocks: list[nn.Module] = []
        inp = block_out
        for hidden, out in extras:
            blocks.append(_extra_block(inp, hidden, out))
            sources.append(out)
            inp = out
        self.extras = nn.ModuleList(blocks)
        k = PRIORS_PER_LOCATION
        # 3x3 pad-1 heads on the first five sources, 1x1 on the last (1x1 map).
        kernels = [3] * (len(sources) - 1) + [1]
        self.classification_headers = nn.ModuleList(
            nn.Conv2d(c, k * num_classes, kernel_size=ks, padding=ks // 2)
            for c, ks in zip(sources, kernels, strict=True)
        )
        self.regression_headers = nn.ModuleList(
            nn.Conv2d(c, k * 4, kernel_size=ks, padding=ks // 2)
            for c, ks in zip(sources, kernels, strict=True)
        )
        self.source_channels = tuple(sources)

    def _split_block(self) -> nn.Sequential:
        """The layers of block 14, the one the first source is taken from."""
        block = self.base_net[SOURCE_BLOCK]
        if not isinstance(block, InvertedResidual):
            raise TypeError(f"base_net[{SOURCE_BLOCK}] is {type(block).__name__}")
        return block.conv

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the heads read, in prior order (19x19 ... 1x1)."""
        # Layer by layer, as the zoo's SSD.forward does: calling a sliced Sequential would
        # add a scope to every ONNX node name and change the file size.
        backbone = list(self.base_net)
        block = list(self._split_block())
        for layer in backbone[:SOURCE_BLOCK]:
            x = layer(x)
        # Block 14 has stride 2, hence no residual: splitting its Sequential is exact.
        for layer in block[:SOURCE_SPLIT]:
            x = layer(x)
        found = [x]
        for layer in block[SOURCE_SPLIT:]:
            x = layer(x)
        for layer in backbone[SOURCE_BLOCK + 1 :]:
            x = layer(x)
        found.append(x)
        for extra in self.extras:
            x = extra(x)
            found.append(x)
        return found

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidences: list[torch.Tensor] = []
        locations: list[torch.Tensor] = []
        for i, y in enumerate(self.sources(x)):
            confidences.append(self._flatten(self.classification_headers[i](y), self.num_classes))
            locations.append(self._flatten(self.regression_headers[i](y), 4))
        return torch.cat(confidences, 1), torch.cat(locations, 1)

    @staticmethod
    def _flatten(head: torch.Tensor, channels: int) -> torch.Tensor:
        """(N, k*C, H, W) -> (N, H*W*k, C): row-major over (y, x), then prior index."""
        # The zoo's permute + contiguous + view(size(0), -1, C): same ONNX graph as theirs.
        nhwc = head.permute(0, 2, 3, 1).contiguous()
        return nhwc.view(nhwc.size(0), -1, channels)


def init_weights(model: SSDMobileNetV2, seed: int = 0) -> SSDMobileNetV2:
    """Deterministic random weights from ``seed``, drawn as the zoo initialises a new model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                if name.startswith("base_net."):
                    # MobileNetV2's rule: N(0, sqrt(2 / (k*k*out_channels))).
                    fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out), generator=gen)
                else:
                    # SSD.init: Xavier-uniform weights; biases keep PyTorch's default
                    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                    nn.init.xavier_uniform_(module.weight, generator=gen)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                # Not the fresh 1/0/0/1 of a new model: then every folded conv bias is zero,
                # the exporter shares equal initializers, and the file comes out ~50 kB
                # smaller than any trained model's. Trained-looking statistics avoid that.
                nn.init.uniform_(module.weight, 0.5, 1.5, generator=gen)
                nn.init.normal_(module.bias, 0.0, 0.1, generator=gen)
                if module.running_mean is not None and module.running_var is not None:
                    module.running_mean.normal_(0.0, 0.1, generator=gen)
                    module.running_var.uniform_(0.5, 1.5, generator=gen)
    return model


def ssd_mobilenetv2(
    num_classes: int,
    width_mult: float = 1.0,
    *,
    last_channel: int | None = None,
    extras: Sequence[tuple[int, int]] = ZOO_EXTRAS,
    channel_rule: ChannelRule = "divisible8",
    seed: int = 0,
) -> SSDMobileNetV2:
    """The zoo network (defaults are exactly the reference) with seeded weights, in eval mode.

    ``num_classes`` includes background (COCO 81, VOC 21, person 2). ``last_channel`` and
    ``extras`` shrink the network for demos; ``channel_rule`` "zoo" truncates scaled widths
    with int() as the zoo's MobileNetV2 does, "divisible8" rounds them as torchvision does
    (the two agree at width 1.0).
    """
    model = SSDMobileNetV2(
        num_classes,
        width_mult,
        last_channel=last_channel,
        extras=extras,
        channel_rule=channel_rule,
    )
    return init_weights(model, seed).eval()


def ssd_mobilenetv2_demo(num_classes: int, seed: int = 0) -> SSDMobileNetV2:
    """A shrunken network for demos and fast tests (width 0.35, small extras and heads)."""
    return ssd_mobilenetv2(
        num_classes, DEMO_WIDTH_MULT, last_channel=DEMO_LAST_CHANNEL, extras=DEMO_EXTRAS, seed=seed
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


# --- checkpoints --------------------------------------------------------------------------

# Wrappers seen around a state_dict in saved checkpoints.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# The zoo's SSD registers its priors as a buffer, so its checkpoints hold them; ours are
# computed from the specs, so a checkpoint's copy is compared and then dropped.
_PRIORS_KEY = "priors"
_SHOWN = 8


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded checkpoint, or an InputError saying what arrived."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise InputError(
            f"expected a state_dict (a mapping of parameter names to tensors), "
            f"got {type(obj).__name__}",
            path=path,
        )
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"entries that are not tensors: {_listed(bad)}", path=path)
    return state


def _listed(names: Sequence[str]) -> str:
    """At most _SHOWN names, then how many more."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def load_checkpoint(model: SSDMobileNetV2, path: str | Path) -> SSDMobileNetV2:
    """Load a zoo ``.pth`` state_dict into ``model`` strictly; errors name the bad keys."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for unreadable files
        raise InputError(f"not a loadable PyTorch checkpoint: {exc}", path=path) from None
    state = _unwrap(obj, path)
    priors = state.pop(_PRIORS_KEY, None)
    if priors is not None:
        _check_priors(priors, path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    if problems:
        raise InputError(
            f"checkpoint does not fit ssd_mobilenetv2(num_classes={model.num_classes}, "
            f"width_mult={model.width_mult}): " + "; ".join(problems),
            path=path,
        )
    model.load_state_dict(state, strict=True)
    return model


def _check_priors(priors: torch.Tensor, path: Path) -> None:
    """A checkpoint's own priors must be the zoo's 3000 priors, or its boxes decode wrongly."""
    expected = ssd_priors()
    got = priors.detach().cpu().numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-6):
        raise InputError(
            f"checkpoint priors differ from the zoo's (shape {got.shape}, expected "
            f"{expected.shape}): it was trained with another prior configuration",
            path=path,
        )


# --- decode (the deployed model's post-processing, section 4) --------------------------------


def priors_tensor() -> torch.Tensor:
    """The zoo's (3000, 4) priors (cx, cy, w, h) as a float32 tensor."""
    values: npt.NDArray[np.float32] = ssd_priors()
    return torch.from_numpy(values.copy())


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(N, B, 4) offsets -> (N, B, 4) corners x1, y1, x2, y2 normalised and clipped to [0, 1]."""
    centres = offsets[..., :2] * CENTER_VARIANCE * priors[:, 2:] + priors[:, :2]
    sizes = torch.exp(offsets[..., 2:] * SIZE_VARIANCE) * priors[:, 2:]
    corners = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)
    return corners.clamp(0.0, 1.0)


def decode(
    logits: torch.Tensor, offsets: torch.Tensor, priors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw outputs -> (softmax scores incl. background (N,B,C), clipped xyxy boxes (N,B,4))."""
    return torch.softmax(logits, dim=-1), decode_boxes(offsets, priors)
