"""The architecture as numbers: per-level shapes, parameters, FLOPs, memory, valid sizes.

Shapes and FLOPs come from one forward pass on PyTorch's ``meta`` device (no memory, no
compute), so a summary of a 3D model at a large size is instant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from unetkit.model import sizes
from unetkit.model.config import UNetConfig
from unetkit.model.unet import UNet

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_flops(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    """FLOPs of one convolution call, a multiply-add counted as 2 (biases ignored)."""
    if isinstance(module, _CONVS):
        per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        return 2 * per_out * out.numel()
    if isinstance(module, _CONV_TS):
        per_in = module.out_channels // module.groups * math.prod(module.kernel_size)
        return 2 * per_in * inp.numel()
    return 0


@dataclass
class LevelRow:
    """One resolution level: encoder and decoder shapes (batch 1), parameters, FLOPs, memory."""

    level: int
    encoder_shape: tuple[int, ...]
    decoder_shape: tuple[int, ...] | None
    encoder_params: int
    decoder_params: int
    encoder_flops: int
    decoder_flops: int
    activation_bytes: int


@dataclass
class ModelSummary:
    """Everything ``unetkit info`` prints; ``to_dict`` for JSON."""

    config: UNetConfig
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[LevelRow]
    head_params: int
    total_params: int
    total_flops: int
    activation_bytes: int
    parameter_bytes: int
    train_step_bytes: int
    receptive_field: int
    conv_layers: int
    valid_sizes: dict[str, Any] = field(default_factory=dict)
    receptive_fields: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"] = dataclasses.asdict(self.config)
        return d

    def format_table(self) -> str:
        """A readable text table, one row per level plus totals."""
        hdr = (
            "level",
            "encoder out",
            "decoder out",
            "params enc",
            "params dec",
            "GFLOP enc",
            "GFLOP dec",
            "act. MiB",
        )
        lines = []
        for r in self.rows:
            lines.append(
                (
                    str(r.level),
                    "x".join(map(str, r.encoder_shape)),
                    "x".join(map(str, r.decoder_shape)) if r.decoder_shape else "-",
                    f"{r.encoder_params:,}",
                    f"{r.decoder_params:,}" if r.decoder_shape else "-",
                    f"{r.encoder_flops / 1e9:.3f}",
                    f"{r.decoder_flops / 1e9:.3f}" if r.decoder_shape else "-",
                    f"{r.activation_bytes / 2**20:.1f}",
                )
            )
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(hdr)]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))

        c = self.config
        out = [
            f"U-Net {c.spatial_dims}D  depth {c.depth}  widths {list(c.widths)}  "
            f"padding={c.padding} down={c.down} up={c.up} fusion={c.fusion} "
            f"norm={c.norm} block={c.block}"
            + ("" if c.encoder_blocks is None else f" encoder_blocks={list(c.encoder_blocks)}")
            + _anisotropy_text(c),
            f"input {'x'.join(map(str, self.input_shape))} -> output "
            f"{'x'.join(map(str, self.output_shape))}  (batch, channels, spatial)",
            "",
            fmt(hdr),
            fmt(["-" * w for w in widths]),
            *(fmt(row) for row in lines),
            "",
            f"head parameters         {self.head_params:,}",
            f"parameters              {self.total_params:,}  "
            f"({self.parameter_bytes / 2**20:.1f} MiB fp32)",
            f"convolution layers      {self.conv_layers}",
            f"forward FLOPs           {self.total_flops / 1e9:.3f} G  (multiply-add = 2)",
            f"activations (train)     {self.activation_bytes / 2**20:.1f} MiB  "
            f"(batch 1, fp32, tensors kept for backward)",
            f"training step (est.)    {self.train_step_bytes / 2**20:.1f} MiB  "
            f"(activations + weights, gradients, AdamW state)",
            f"receptive field         {self.receptive_field} px per axis"
            if len(set(self.receptive_fields)) <= 1
            else f"receptive field         {'x'.join(map(str, self.receptive_fields))} px "
            f"(per spatial axis)",
        ]
        if self.valid_sizes and c.anisotropic:
            for axis, v in enumerate(self.valid_sizes["axes"]):
                out.append(
                    f"valid sizes, axis {axis}     nearest to {v['requested']}: {v['below']} and "
                    f"{v['above']}; first few: {v['first']} (step {v['step']})"
                )
        elif self.valid_sizes:
            v = self.valid_sizes
            out.append(
                f"valid input sizes       nearest to {v['requested']}: {v['below']} and "
                f"{v['above']}; first few: {v['first']} (step {v['step']})"
            )
        return "\n".join(out)


def _anisotropy_text(c: UNetConfig) -> str:
    """`` strides=... kernel_sizes=...`` for the header line of an anisotropic model."""
    text = ""
    if c.strides is not None:
        text += f" strides={[list(r) for r in c.strides]}"
    if c.kernel_sizes is not None:
        text += f" kernel_sizes={[list(r) for r in c.kernel_sizes]}"
    return text


def _valid_axis(config: UNetConfig, n: int, axis: int) -> dict[str, Any]:
    """The valid-size facts of one spatial axis of an anisotropic valid-mode model."""
    below, above = sizes.nearest_valid_sizes(config, n, axis)
    return {
        "requested": n,
        "below": below,
        "above": above,
        "first": sizes.valid_input_sizes(config, 1, 2048, axis)[:4],
        "step": config.downsample_factors[axis],
    }


def summarize(
    config: UNetConfig, input_size: int | Sequence[int] | None = None, batch: int = 1
) -> ModelSummary:
    """Summarise ``config`` for an input of ``input_size`` (default: 572 valid, 256 same).

    Activation memory counts the outputs of every layer (and fused maps) kept for the backward
    pass, fp32; with ``checkpointing`` the recomputed blocks keep only their outputs.
    """
    if input_size is None:
        default = [
            sizes.nearest_valid_sizes(config, 572, a)[1] or 572 for a in range(config.spatial_dims)
        ]
        input_size = default if config.padding == "valid" else 256
    spatial = (
        (int(input_size),) * config.spatial_dims
        if isinstance(input_size, int)
        else tuple(int(s) for s in input_size)
    )
    valid: dict[str, Any] = {}
    if config.padding == "valid" and config.anisotropic:
        valid = {"axes": [_valid_axis(config, n, a) for a, n in enumerate(spatial)]}
    elif config.padding == "valid":
        below, above = sizes.nearest_valid_sizes(config, spatial[0])
        first = sizes.valid_input_sizes(config, 1, 2048)[:4]
        valid = {
            "requested": spatial[0],
            "below": below,
            "above": above,
            "first": first,
            "step": config.downsample_factor,
        }
    out_spatial = sizes.output_size(config, spatial)

    with torch.device("meta"):
        model = UNet(dataclasses.replace(config, checkpointing="off"))
    model.train()

    flops: dict[str, int] = {}
    acts: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    ckpt_enc = config.checkpointing in ("encoder", "all")
    ckpt_dec = config.checkpointing == "all"

    def owner(name: str) -> str:
        parts = name.split(".")
        if parts[0] in ("encoder", "decoder") and len(parts) >= 3:
            return f"{parts[0]}.{parts[2]}"
        return parts[0]

    def checkpointed(name: str) -> bool:
        parts = name.split(".")
        return (
            len(parts) >= 3
            and parts[1] == "blocks"
            and ((parts[0] == "encoder" and ckpt_enc) or (parts[0] == "decoder" and ckpt_dec))
        )

    hooks = []
    for name, module in model.named_modules():
        is_leaf = len(list(module.children())) == 0
        is_block = name.count(".") == 2 and name.split(".")[1] == "blocks"
        is_fuse = name.count(".") == 2 and name.split(".")[1] == "fuses"

        def hook(
            mod: nn.Module,
            inp: tuple[Tensor, ...],
            out: Tensor,
            name: str = name,
            is_leaf: bool = is_leaf,
            is_block: bool = is_block,
            is_fuse: bool = is_fuse,
        ) -> None:
            key = owner(name)
            if is_leaf:
                flops[key] = flops.get(key, 0) + conv_flops(mod, inp[0], out)
                if not checkpointed(name) and not isinstance(mod, nn.Identity):
                    acts[key] = acts.get(key, 0) + out.numel() * 4
            if is_block:
                shapes[key] = tuple(out.shape)
                if checkpointed(name):
                    acts[key] = acts.get(key, 0) + out.numel() * 4
            if is_fuse and mod.fusion != "none":
                acts[key] = acts.get(key, 0) + out.numel() * 4  # the concatenated map

        hooks.append(module.register_forward_hook(hook))
    x = torch.empty(batch, config.in_channels, *spatial, device="meta")
    t = torch.zeros(batch, device="meta") if config.time_conditioning else None
    model(x, t)  # a time-conditioned model also takes the noise level
    for h in hooks:
        h.remove()

    rows: list[LevelRow] = []
    for i in range(config.depth):
        enc_params = count_parameters(model.encoder.blocks[i])
        if i > 0:
            enc_params += count_parameters(model.encoder.downs[i - 1])
        dec_params = 0
        has_dec = i < config.depth - 1
        if has_dec:
            dec_params = sum(
                count_parameters(m)
                for m in (model.decoder.ups[i], model.decoder.fuses[i], model.decoder.blocks[i])
            )
        rows.append(
            LevelRow(
                level=i,
                encoder_shape=shapes[f"encoder.{i}"],
                decoder_shape=shapes.get(f"decoder.{i}") if has_dec else None,
                encoder_params=enc_params,
                decoder_params=dec_params,
                encoder_flops=flops.get(f"encoder.{i}", 0),
                decoder_flops=flops.get(f"decoder.{i}", 0),
                activation_bytes=acts.get(f"encoder.{i}", 0) + acts.get(f"decoder.{i}", 0),
            )
        )
    head_params = count_parameters(model.head)
    total_params = count_parameters(model)
    act_bytes = sum(acts.values()) + x.numel() * 4
    return ModelSummary(
        config=config,
        input_shape=tuple(x.shape),
        output_shape=(batch, config.out_channels, *out_spatial),
        rows=rows,
        head_params=head_params,
        total_params=total_params,
        total_flops=sum(flops.values()),
        activation_bytes=act_bytes,
        parameter_bytes=total_params * 4,
        train_step_bytes=act_bytes + total_params * 4 * 4,
        receptive_field=sizes.receptive_field(config),
        receptive_fields=tuple(
            sizes.receptive_field(config, a) for a in range(config.spatial_dims)
        ),
        conv_layers=sum(1 for m in model.modules() if isinstance(m, _CONVS + _CONV_TS)),
        valid_sizes=valid,
    )
