"""Tiny networks with the heads of the zoo's other detector families, for honest decoder
tests without downloads: each produces exactly the raw outputs its family's decoder reads
(``evalkit.postprocess.yolo``), is trained on the synthetic shapes by
``scripts/train_families.py`` and is evaluated by ``evalkit run`` like any model.

A family here is its head, its output layout and its input (layout and normalisation, the
pre-processor preset of the zoo's pipeline for it); the backbone is shared and small:
three stride-2 stages to strides 8, 16 and 32, from a 128 x 128 input.

=============  ==============================  ===========================================
family         input (preset)                  outputs
=============  ==============================  ===========================================
ultralytics    NHWC x / 255 (unit-nhwc)        (1, 4+K, F): normalised cx, cy, w, h,
                                               class probabilities (decoded in the graph)
yolox          NCHW BGR 0-255, letterbox       (1, F, 5+K): raw xy, log wh (per stride),
               (yolod)                         objectness and class probabilities
yolov2         NHWC (x-127.5)/127.5            (1, 16, 16, A*(5+K)): YOLOv2 logits, stride 8
               (signed-nhwc)                   (its head reads all three levels)
yoloxn         NHWC (x-127.5)/127.5            one YOLOv2 grid per stride 8, 16, 32
blazeface      NHWC (x-127.5)/127.5            (1,512,16) (1,512,1) (1,384,16) (1,384,1):
                                               box offsets in input pixels, score logits
=============  ==============================  ===========================================

Training mirrors each decoder in torch (:meth:`FamilyNet.decode`): the loss is taken on
decoded boxes and scores, so a model trained here is right exactly when the decoder reads
its outputs the way they were meant (a wrong decoder fails the end-to-end tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from evalkit.models.priors import blazeface_anchors

INPUT_SIZE = 128
STRIDES = (8, 16, 32)
WIDTHS = (16, 32, 48, 64, 96)  # stem, stride 4, 8, 16, 32
# YOLOv2-style anchors (w, h) in grid cells of the 16 x 16 grid; yoloxn's base anchors are
# fractions of the input (the decoder scales them by input / stride per level).
YOLOV2_ANCHORS = ((3.6, 3.6), (6.0, 6.0), (9.2, 9.2))
YOLOXN_ANCHORS = ((0.22, 0.22), (0.38, 0.38), (0.58, 0.58))


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Backbone(nn.Module):
    """Features at strides 8, 16 and 32 of an NCHW input already normalised, with a light
    top-down path so that the fine levels see the coarse context (a shape's class needs
    more than a few cells)."""

    def __init__(self) -> None:
        super().__init__()
        w = WIDTHS
        self.stem = nn.Sequential(_conv(3, w[0], 2), _conv(w[0], w[1], 2), _conv(w[1], w[1]))
        self.s8 = nn.Sequential(_conv(w[1], w[2], 2), _conv(w[2], w[2]))
        self.s16 = nn.Sequential(_conv(w[2], w[3], 2), _conv(w[3], w[3]))
        self.s32 = nn.Sequential(_conv(w[3], w[4], 2), _conv(w[4], w[4]))
        self.down32 = nn.Conv2d(w[4], w[3], 1)
        self.down16 = nn.Conv2d(w[3], w[2], 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.s8(self.stem(x))
        p4 = self.s16(p3)
        p5 = self.s32(p4)
        p4 = p4 + self.up(self.down32(p5))
        p3 = p3 + self.up(self.down16(p4))
        return p3, p4, p5


HEAD_WIDTH = 64


def _head(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 tower conv, then the 1x1 prediction."""
    return nn.Sequential(_conv(c_in, HEAD_WIDTH), nn.Conv2d(HEAD_WIDTH, c_out, 1))


def _grid(cells: int) -> torch.Tensor:
    """(cells^2, 2) cell x, y, row by row."""
    ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float()


@dataclass(frozen=True)
class Decoded:
    """Per location: normalised x1, y1, x2, y2 (not clipped) and per-class scores; for the
    assignment, each location's prior centre (normalised), prior size (normalised) and the
    grid cell it must contain (None where a location may predict anywhere)."""

    boxes: torch.Tensor  # (N, L, 4)
    scores: torch.Tensor  # (N, L, K)


def _corners(cx: torch.Tensor, cy: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> Any:
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


class FamilyNet(nn.Module):
    """Base: the family's input handling, raw outputs (``forward``) and torch decode."""

    family: ClassVar[str]
    preprocessor: ClassVar[str]
    layout: ClassVar[str]  # of the input tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = Backbone()

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        return self.backbone(x)

    def decode(self, outputs: Any) -> Decoded:
        raise NotImplementedError

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Prior centre (L, 2), prior size (L, 2) and level-grid size (L,) or None."""
        raise NotImplementedError


class UltralyticsNet(FamilyNet):
    family = "ultralytics"
    preprocessor = "unit-nhwc"
    layout = "NHWC"

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        chans = WIDTHS[2:]
        self.heads = nn.ModuleList(_head(c, 4 + num_classes) for c in chans)
        # Buffers, not built in forward: the exported graph holds them as constants.
        for stride in STRIDES:
            for name, value in zip(
                "abcm", self._decode_constants(INPUT_SIZE // stride), strict=True
            ):
                self.register_buffer(f"{name}{stride}", value, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for feat, head, stride in zip(self.features(x), self.heads, STRIDES, strict=True):
            # Decoded on the (N, 4+K, H, W) map by per-channel constants, with no slice
            # and no transpose: onnx2tf's layout guesses break on those (a channel slice of
            # the 4 x 4 level, whose channel count is twice its side, was taken on H).
            t = head(feat)
            a, b, c, m = (getattr(self, f"{name}{stride}") for name in "abcm")
            # exp of the side channels only (m zeroes the others): in an int8 export the
            # class logits' exp would otherwise set the range, and the sides' resolution.
            sides = torch.exp(t.clamp(-6, 4) * m) * b
            parts.append((torch.sigmoid(t) * a + sides + c).flatten(2))
        return torch.cat(parts, 2)  # (N, 4+K, F), as the zoo's files

    def _decode_constants(self, cells: int) -> tuple[torch.Tensor, ...]:
        """a, b, c, m of ``sigmoid(t) a + exp(t m) b + c``, per channel and cell:
        cx, cy = (cell + 3 sigmoid - 1) / cells; w, h = exp * 4 / cells; classes = sigmoid."""
        k = 4 + self.num_classes
        a, b, m = torch.zeros(1, k, 1, 1), torch.zeros(1, k, 1, 1), torch.zeros(1, k, 1, 1)
        a[:, :2], b[:, 2:4], m[:, 2:4], a[:, 4:] = 3 / cells, 4 / cells, 1, 1
        c = torch.zeros(1, k, cells, cells)
        c[0, :2] = (_grid(cells).T.reshape(2, cells, cells) - 1) / cells
        return a, b, c, m

    def decode(self, outputs: Any) -> Decoded:
        p = outputs.transpose(1, 2)
        return Decoded(_corners(p[..., 0], p[..., 1], p[..., 2], p[..., 3]), p[..., 4:])

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return _free_priors()


def _free_priors() -> tuple[torch.Tensor, torch.Tensor, None]:
    centres, sizes = [], []
    for stride in STRIDES:
        cells = INPUT_SIZE // stride
        centres.append((_grid(cells) + 0.5) / cells)
        sizes.append(torch.full((cells * cells, 2), 4.0 / cells))
    return torch.cat(centres), torch.cat(sizes), None


class YoloxNet(FamilyNet):
    family = "yolox"
    preprocessor = "yolod"
    layout = "NCHW"

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.heads = nn.ModuleList(_head(c, 5 + num_classes) for c in WIDTHS[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The zoo's YOLOD takes raw 0-255 pixels; this net scales them itself.
        parts = []
        for feat, head in zip(self.features(x / 255.0), self.heads, strict=True):
            t = head(feat).flatten(2).transpose(1, 2)
            parts.append(torch.cat([t[..., 0:4], torch.sigmoid(t[..., 4:])], -1))
        return torch.cat(parts, 1)  # (N, F, 5+K)

    def decode(self, outputs: Any) -> Decoded:
        cells, strides = [], []
        for stride in STRIDES:
            n = INPUT_SIZE // stride
            cells.append(_grid(n))
            strides.append(torch.full((n * n, 1), float(stride)))
        g, s = torch.cat(cells).to(outputs), torch.cat(strides).to(outputs)
        xy = (outputs[..., 0:2] + g) * s / INPUT_SIZE
        wh = torch.exp(outputs[..., 2:4].clamp(max=8)) * s / INPUT_SIZE
        scores = outputs[..., 5:] * outputs[..., 4:5]
        return Decoded(_corners(xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1]), scores)

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return _free_priors()


def _yolov2_decode(t: torch.Tensor, anchors: torch.Tensor, k: int) -> tuple[Any, Any]:
    """One NHWC YOLOv2 grid, as ``evalkit.postprocess.yolo.yolov2_head`` reads it."""
    n, h, w, _ = t.shape
    a = anchors.shape[0]
    p = t.reshape(n, h, w, a, 5 + k)
    flat = torch.arange(h * w)
    cell = torch.stack([flat % h, flat // h], 1).float().reshape(1, h, w, 1, 2).to(t)
    dims = torch.tensor([h, w], dtype=t.dtype)
    xy = (torch.sigmoid(p[..., 0:2]) + cell) / dims
    wh = torch.exp(p[..., 2:4].clamp(max=6)) * anchors.reshape(1, 1, 1, a, 2).to(t) / dims
    boxes = _corners(xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1])
    scores = torch.sigmoid(p[..., 4:5]) * torch.softmax(p[..., 5:], -1)
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1, k)


def _anchor_priors(
    cells: int, anchors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres, sizes and grid of a YOLOv2 grid's (cell, anchor) locations, in its order."""
    a = anchors.shape[0]
    centres = ((_grid(cells) + 0.5) / cells).repeat_interleave(a, 0)
    sizes = (anchors / cells).repeat(cells * cells, 1)
    return centres, sizes, torch.full((cells * cells * a,), float(cells))


class YoloV2Net(FamilyNet):
    family = "yolov2"
    preprocessor = "signed-nhwc"
    layout = "NHWC"
    anchors: ClassVar[tuple[tuple[float, float], ...]] = YOLOV2_ANCHORS

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        # A single grid has no coarse level of its own: it reads all three, brought to
        # stride 8, through two 3x3 convs (with the stride-8 level alone and one conv, class
        # confusions cost 8 AP points and it stayed at AP50 0.79).
        self.context = nn.Sequential(
            _conv(sum(WIDTHS[2:]), HEAD_WIDTH), _conv(HEAD_WIDTH, HEAD_WIDTH)
        )
        self.head = nn.Conv2d(HEAD_WIDTH, len(self.anchors) * (5 + num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One grid, stride 8 (16 x 16 at 128): at stride 16, two centres often share a cell.
        p3, p4, p5 = self.features(x)
        up = nn.functional.interpolate
        joined = torch.cat([p3, up(p4, scale_factor=2.0), up(p5, scale_factor=4.0)], 1)
        return self.head(self.context(joined)).permute(0, 2, 3, 1)  # (N, 16, 16, A*(5+K))

    def decode(self, outputs: Any) -> Decoded:
        anchors = torch.tensor(self.anchors)
        return Decoded(*_yolov2_decode(outputs, anchors, self.num_classes))

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return _anchor_priors(INPUT_SIZE // 8, torch.tensor(self.anchors))


class YoloxnNet(FamilyNet):
    family = "yoloxn"
    preprocessor = "signed-nhwc"
    layout = "NHWC"
    anchors: ClassVar[tuple[tuple[float, float], ...]] = YOLOXN_ANCHORS

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        per = len(self.anchors) * (5 + num_classes)
        self.heads = nn.ModuleList(_head(c, per) for c in WIDTHS[2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.features(x)
        return tuple(head(f).permute(0, 2, 3, 1) for f, head in zip(feats, self.heads, strict=True))

    def _level_anchors(self, stride: int) -> torch.Tensor:
        return torch.tensor(self.anchors) * (INPUT_SIZE / stride)

    def decode(self, outputs: Any) -> Decoded:
        parts = [
            _yolov2_decode(t, self._level_anchors(s), self.num_classes)
            for t, s in zip(outputs, STRIDES, strict=True)
        ]
        return Decoded(torch.cat([b for b, _ in parts], 1), torch.cat([s for _, s in parts], 1))

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        parts = [_anchor_priors(INPUT_SIZE // s, self._level_anchors(s)) for s in STRIDES]
        return tuple(torch.cat([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


class BlazeFaceNet(FamilyNet):
    family = "blazeface"
    preprocessor = "signed-nhwc"
    layout = "NHWC"

    def __init__(self, num_classes: int = 1) -> None:
        if num_classes != 1:
            raise ValueError("BlazeFace detects one class")
        super().__init__(num_classes)
        self.box8 = _head(WIDTHS[2], 2 * 16)
        self.score8 = _head(WIDTHS[2], 2)
        self.box16 = _head(WIDTHS[3], 6 * 16)
        self.score16 = _head(WIDTHS[3], 6)

    @staticmethod
    def _flat(t: torch.Tensor, width: int) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3, p4, _ = self.features(x)
        return (
            self._flat(self.box8(p3), 16),  # (N, 512, 16)
            self._flat(self.score8(p3), 1),  # (N, 512, 1)
            self._flat(self.box16(p4), 16),  # (N, 384, 16)
            self._flat(self.score16(p4), 1),  # (N, 384, 1)
        )

    def decode(self, outputs: Any) -> Decoded:
        box8, score8, box16, score16 = outputs
        raw = torch.cat([box8[..., :4], box16[..., :4]], 1) / INPUT_SIZE
        anchors = torch.from_numpy(blazeface_anchors()).to(raw)
        centre = raw[..., 0:2] + anchors
        boxes = _corners(centre[..., 0], centre[..., 1], raw[..., 2], raw[..., 3])
        scores = torch.sigmoid(torch.cat([score8, score16], 1).clamp(-80, 80))
        return Decoded(boxes, scores)

    def priors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        centres = torch.from_numpy(blazeface_anchors())
        sizes = torch.cat([torch.full((512, 2), 0.25), torch.full((384, 2), 0.5)])
        return centres, sizes, None


NETS: dict[str, type[FamilyNet]] = {
    n.family: n for n in (UltralyticsNet, YoloxNet, YoloV2Net, YoloxnNet, BlazeFaceNet)
}


def output_names(net: FamilyNet) -> list[str]:
    example = net(torch.zeros(_input_shape(net)))
    count = 1 if isinstance(example, torch.Tensor) else len(example)
    return [f"output_{i}" for i in range(count)]


def _input_shape(net: FamilyNet) -> tuple[int, int, int, int]:
    if net.layout == "NHWC":
        return (1, INPUT_SIZE, INPUT_SIZE, 3)
    return (1, 3, INPUT_SIZE, INPUT_SIZE)


def export_onnx(net: FamilyNet, path: Any) -> None:
    """The net as an ONNX file with a fixed batch of one (opset 17, TorchScript exporter)."""
    import warnings

    net.eval()
    names = output_names(net)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(_input_shape(net)),),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=17,
            do_constant_folding=True,
            input_names=["images"],
            output_names=names,
        )


def decoder_options(net: FamilyNet) -> dict[str, Any]:
    """What ``evalkit run`` needs beside the file to decode this net's outputs."""
    options: dict[str, Any] = {"decoder": net.family, "preprocessor": net.preprocessor}
    if isinstance(net, (YoloV2Net, YoloxnNet)):
        options["anchors"] = [list(a) for a in net.anchors]
    if isinstance(net, YoloxnNet):
        options["strides"] = list(STRIDES)
    return options


def run_config(
    net: FamilyNet, model: Any, annotations: Any, images: Any, output: Any, class_names: list[str]
) -> dict[str, Any]:
    """The ``evalkit run`` configuration that scores an exported family net on a COCO-layout
    set (one float variant, no latency pass)."""
    return {
        "name": f"family {net.family}",
        "dataset": {"format": "coco", "annotations": str(annotations), "images": str(images)},
        "variants": {
            "float": {"model": str(model), "class_names": class_names, **decoder_options(net)}
        },
        "latency": {"runs": 0},
        "output": str(output),
        "quiet": True,
    }
