"""GAN objectives: hinge (default), non-saturating logistic, WGAN-GP; optional R1 on real images.

`GANLoss` owns everything that touches D's output, so the training loop only calls
`discriminator_loss` and `generator_loss` (the shape of stylegan2-ada's training/loss.py)."""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

LOSSES = ("hinge", "nonsaturating", "wgan-gp")

Augment = Callable[[torch.Tensor], torch.Tensor]


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


class GANLoss:
    def __init__(self, kind: str = "hinge", r1_gamma: float = 0.0, gp_weight: float = 10.0, class_weight: float = 0.0):
        if kind not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")
        self.kind = kind
        self.r1_gamma = r1_gamma
        self.gp_weight = gp_weight
        self.class_weight = class_weight  # auxiliary classification (real images for D, fakes for G)

    def discriminator_loss(self, discriminator, real, fake, labels, augment: Augment = _identity):
        """Returns (loss, real_logits); real_logits feed the augmentation controller."""
        needs_real_grad = self.r1_gamma > 0
        real_input = augment(real)
        if needs_real_grad:
            real_input = real_input.detach().requires_grad_(True)
        real_logits, class_logits = self._call(discriminator, real_input, labels)
        fake_logits = discriminator(augment(fake.detach()), labels)
        if self.kind == "hinge":
            loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        elif self.kind == "nonsaturating":
            loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        else:
            loss = fake_logits.mean() - real_logits.mean()
            loss = loss + self.gp_weight * gradient_penalty(discriminator, real.detach(), fake.detach(), labels, augment)
        if needs_real_grad:
            loss = loss + self.r1_gamma / 2 * r1_penalty(real_logits, real_input)
        if class_logits is not None:
            loss = loss + self.class_weight * F.cross_entropy(class_logits.float(), labels)
        return loss, real_logits.detach()

    def generator_loss(self, discriminator, fake, labels, augment: Augment = _identity):
        fake_logits, class_logits = self._call(discriminator, augment(fake), labels)
        if self.kind == "nonsaturating":
            loss = F.softplus(-fake_logits).mean()
        else:
            loss = -fake_logits.mean()  # hinge and WGAN share the generator objective
        if class_logits is not None:
            loss = loss + self.class_weight * F.cross_entropy(class_logits.float(), labels)
        return loss

    def _call(self, discriminator, images, labels):
        """(logits, class logits or None); class logits only when the auxiliary term is on."""
        if self.class_weight > 0 and labels is not None:
            return discriminator(images, labels, with_classes=True)
        return discriminator(images, labels), None


def r1_penalty(real_logits: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(real_logits.sum(), real_input, create_graph=True)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def gradient_penalty(discriminator, real, fake, labels, augment: Augment = _identity) -> torch.Tensor:
    """WGAN-GP: (‖∇D(x̂)‖ − 1)² on random interpolates of real and fake."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    logits = discriminator(augment(mixed), labels)
    (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()
