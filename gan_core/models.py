"""Resolution-adaptive class-conditional generator and projection discriminator (spectral norm).

Both networks double or halve the resolution once per block between 4×4 and the image size, so one
definition serves 8 to 128 px. With a single class they are unconditional (no embedding, no
projection)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

SUPPORTED_SIZES = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class ModelConfig:
    size: int = 32
    channels: int = 1
    num_classes: int = 10
    z_dim: int = 64
    g_width: int = 32  # channels at the output resolution of a 32 px model; wider at lower resolutions
    d_width: int = 32

    def __post_init__(self) -> None:
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(f"size: expected one of {SUPPORTED_SIZES}, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {self.channels}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes: expected at least 1, got {self.num_classes}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 1

    def to_dict(self) -> dict:
        return asdict(self)


def _width_at(width: int, resolution: int) -> int:
    # width channels at 32 px, doubling per halving of resolution, capped at 4×width.
    return int(min(max(width * 32 // resolution, 16), width * 4))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift come from the class embedding (plain BN when unconditional)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=num_classes <= 1)
        self.embed = None
        if num_classes > 1:
            self.embed = nn.Embedding(num_classes, 2 * channels)
            nn.init.ones_(self.embed.weight[:, :channels])
            nn.init.zeros_(self.embed.weight[:, channels:])

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if self.embed is None:
            return x
        gamma, beta = self.embed(labels).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return x * gamma + beta


class GeneratorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.norm = ConditionalBatchNorm(in_channels, num_classes)
        # No bias: the next batch norm subtracts it again, so its gradient is only rounding noise
        # (which Adam would amplify into drift).
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(F.relu(self.norm(x, labels)), scale_factor=2, mode="nearest")
        return self.conv(x)


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        n_blocks = int(math.log2(config.size)) - 2
        resolutions = [4 * 2**i for i in range(n_blocks + 1)]
        widths = [_width_at(config.g_width, r) for r in resolutions]
        self.label_embedding = nn.Embedding(config.num_classes, config.z_dim) if config.conditional else None
        self.stem = nn.Linear(config.z_dim, widths[0] * 16)
        self.blocks = nn.ModuleList(GeneratorBlock(widths[i], widths[i + 1], config.num_classes) for i in range(n_blocks))
        self.out_norm = ConditionalBatchNorm(widths[-1], config.num_classes)
        self.to_image = nn.Conv2d(widths[-1], config.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Noise (N×z_dim) and labels (N) → images in [-1, 1], N×C×H×W."""
        if self.label_embedding is not None:
            z = z * self.label_embedding(labels)  # multiplicative conditioning of the latent
        else:
            labels = None
        x = self.stem(z).view(len(z), -1, 4, 4)
        for block in self.blocks:
            x = block(x, labels)
        return torch.tanh(self.to_image(F.relu(self.out_norm(x, labels))))


class Discriminator(nn.Module):
    """Strided convs with spectral norm; the class enters by projection (Miyato & Koyama, 2018)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        n_blocks = int(math.log2(config.size)) - 2
        resolutions = [config.size // 2**i for i in range(n_blocks + 1)]
        widths = [_width_at(config.d_width, r) for r in resolutions]
        self.from_image = spectral_norm(nn.Conv2d(config.channels, widths[0], 3, padding=1))
        # One strided conv per halving: a small D keeps CPU training in minutes and overfits less.
        self.blocks = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)), nn.LeakyReLU(0.2)) for i in range(n_blocks)
        )
        self.head = spectral_norm(nn.Linear(widths[-1], 1))
        self.projection = spectral_norm(nn.Embedding(config.num_classes, widths[-1])) if config.conditional else None
        # Auxiliary class head (used when the loss asks for it): a direct label-fidelity signal.
        self.classifier = nn.Linear(widths[-1], config.num_classes) if config.conditional else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, with_classes: bool = False):
        """Images (N×C×H×W in [-1, 1]) and labels → one logit per image (and class logits if asked)."""
        x = F.leaky_relu(self.from_image(images), 0.2)
        for block in self.blocks:
            x = block(x)
        features = x.sum(dim=(2, 3))
        logits = self.head(features).squeeze(1)
        if self.projection is not None:
            logits = logits + (self.projection(labels) * features).sum(dim=1)
        if with_classes:
            return logits, (self.classifier(features) if self.classifier is not None else None)
        return logits


# Nearest 2× upsampling then a 3×3 convolution is one stride-2 transposed 4×4 convolution whose taps
# are sums of the 3×3 taps (row k of this matrix says which): 4 multiply-adds per output pixel
# instead of 9, and no upsampled copy in memory.
_UPSAMPLED_TAPS = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)


def _folded_norm(norm: ConditionalBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm and class affine as one scale and shift per class (row) and channel."""
    stats = norm.norm
    scale = torch.rsqrt(stats.running_var + stats.eps)
    shift = -stats.running_mean * scale
    if stats.affine:
        scale, shift = scale * stats.weight, shift * stats.weight + stats.bias
    if norm.embed is None:
        return scale[None], shift[None]
    gamma, beta = norm.embed.weight.chunk(2, dim=1)
    return gamma * scale, gamma * shift + beta


class FoldedGenerator:
    """The eval-mode `Generator` rearranged for sampling: batch norms folded into one scale and shift
    per class, each upsample + conv as one transposed conv. The same function up to float rounding,
    about twice as fast on CPU. Built from the weights at the time of the call; cheap to rebuild."""

    @torch.no_grad()
    def __init__(self, generator: Generator):
        self.config = generator.config
        self.device = generator.stem.weight.device
        channels_last = lambda weight: weight.detach().contiguous(memory_format=torch.channels_last)  # noqa: E731
        self.label_embedding = generator.label_embedding.weight.detach() if generator.label_embedding is not None else None
        self.stem = (generator.stem.weight.detach(), generator.stem.bias.detach())
        taps = _UPSAMPLED_TAPS.to(generator.stem.weight)
        self.blocks = [
            (*_folded_norm(block.norm), channels_last(torch.einsum("ak,oikl,bl->ioab", taps, block.conv.weight, taps))) for block in generator.blocks
        ]
        self.out_norm = _folded_norm(generator.out_norm)
        self.to_image = (channels_last(generator.to_image.weight), generator.to_image.bias.detach())

    @staticmethod
    def _scale_shift_relu(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        scale, shift = norm
        if labels is not None:
            scale, shift = scale[labels], shift[labels]
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None]).relu_()

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Noise (N×z_dim) and labels (N) → images in [-1, 1], N×C×H×W, as `Generator.forward`."""
        if self.label_embedding is not None:
            z = z * self.label_embedding[labels]
        else:
            labels = None
        x = F.linear(z, *self.stem).view(len(z), -1, 4, 4).contiguous(memory_format=torch.channels_last)
        for *norm, weight in self.blocks:
            x = F.conv_transpose2d(self._scale_shift_relu(x, norm, labels), weight, stride=2, padding=1)
        x = self._scale_shift_relu(x, self.out_norm, labels)
        return torch.tanh(F.conv2d(x, *self.to_image, padding=1))


def build_models(config: ModelConfig) -> tuple[Generator, Discriminator]:
    return Generator(config), Discriminator(config)
