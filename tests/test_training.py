"""Models, losses, augmentation, the training loop (resume, divergence guard) and sampling."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest
import yaml
import torch

from gan_core.augment import AdaptiveAugmentController, DiffAugment
from gan_core.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, load_generator
from gan_core.data import ImageData
from gan_core.losses import LOSSES, GANLoss
from gan_core.models import SUPPORTED_SIZES, FoldedGenerator, ModelConfig, build_models
from gan_core.sample import generate, latents, sample_seeds
from gan_core.train import TrainConfig, TrainingDiverged, train


def _tiny_data(n_per_class: int = 8, classes: int = 2, size: int = 8) -> ImageData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_per_class * classes, 1, size, size), dtype=np.uint8)
    return ImageData(images, np.repeat(np.arange(classes), n_per_class), [str(i) for i in range(classes)])


TINY = dict(batch_size=8, z_dim=8, g_width=4, d_width=4, log_every=5, checkpoint_every=5, device="cpu")


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [1, 10])
def test_model_shapes(size, channels, num_classes):
    config = ModelConfig(size=size, channels=channels, num_classes=num_classes, z_dim=16, g_width=8, d_width=8)
    generator, discriminator = build_models(config)
    labels = torch.randint(0, num_classes, (3,))
    images = generator(torch.randn(3, 16), labels)
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images, labels).shape == (3,)
    assert (generator.label_embedding is None) == (num_classes == 1)
    assert (discriminator.projection is None) == (num_classes == 1)


def test_conditioning_changes_the_output():
    torch.manual_seed(0)
    generator, discriminator = build_models(ModelConfig(size=8, num_classes=3, z_dim=8, g_width=8, d_width=8))
    z = torch.randn(1, 8).repeat(3, 1)
    with torch.no_grad():
        torch.nn.init.normal_(generator.label_embedding.weight)
        images = generator.eval()(z, torch.arange(3))
        again = generator(z, torch.arange(3))
        other_z = generator(torch.randn(3, 8), torch.arange(3))
    # The same latent and class give the same image; under another class it differs by about as
    # much as another latent makes it differ (an untrained net's outputs are small: compare to them).
    assert torch.equal(images, again)
    label_gap = (images[0] - images[1]).abs().mean().item()
    latent_gap = (images - other_z).abs().mean().item()
    assert label_gap > 0.5 * latent_gap and label_gap > 0.3 * images.abs().mean().item()


@pytest.mark.parametrize("size", [8, 32, 128])
@pytest.mark.parametrize("channels,num_classes", [(1, 10), (3, 1)])
def test_folded_generator_is_the_eval_mode_generator(size, channels, num_classes):
    torch.manual_seed(size)
    generator, _ = build_models(ModelConfig(size=size, channels=channels, num_classes=num_classes, z_dim=16, g_width=8, d_width=8))
    with torch.no_grad():  # trained-looking statistics and class affines, so every folded term matters
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.2, 3)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
            if isinstance(module, torch.nn.Embedding):
                module.weight.normal_(1, 0.5)
    z, labels = torch.randn(6, 16), torch.randint(0, num_classes, (6,))
    with torch.no_grad():
        expected = generator.eval()(z, labels)
    folded = FoldedGenerator(generator.train())(z, labels)
    assert folded.shape == expected.shape
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-5)
    assert generator.training  # folding reads the weights and leaves the module as it was


def test_bad_model_config():
    with pytest.raises(ValueError, match="size"):
        ModelConfig(size=48)
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(channels=2)


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("r1_gamma", [0.0, 1.0])
def test_losses_give_finite_gradients(kind, r1_gamma):
    torch.manual_seed(0)
    generator, discriminator = build_models(ModelConfig(size=8, num_classes=2, z_dim=8, g_width=4, d_width=4))
    loss = GANLoss(kind, r1_gamma=r1_gamma)
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    labels = torch.tensor([0, 1, 0, 1])
    fake = generator(torch.randn(4, 8), labels)
    d_loss, real_logits = loss.discriminator_loss(discriminator, real, fake, labels, DiffAugment(p=0.5))
    d_loss.backward()
    assert torch.isfinite(d_loss) and real_logits.shape == (4,)
    assert all(torch.isfinite(p.grad).all() for p in discriminator.parameters() if p.grad is not None)
    g_loss = loss.generator_loss(discriminator, fake, labels)
    g_loss.backward()
    assert generator.stem.weight.grad is not None and torch.isfinite(generator.stem.weight.grad).all()


def test_hinge_loss_values():
    class Constant(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x, labels):
            return torch.full((len(x),), self.value)

    loss = GANLoss("hinge")
    x = torch.zeros(2, 1, 8, 8)
    assert loss.discriminator_loss(Constant(0.5), x, x, None)[0].item() == pytest.approx(0.5 + 1.5)
    assert loss.generator_loss(Constant(0.5), x, None).item() == pytest.approx(-0.5)


def test_diffaugment_changes_images_only_when_on():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 16, 16) * 2 - 1
    assert torch.equal(DiffAugment(p=0.0)(x), x)
    out = DiffAugment(p=1.0)(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # Cutout alone zeroes a square of half the side in every image.
    cut = DiffAugment("cutout", p=1.0)(torch.ones(8, 1, 16, 16))
    zeros = (cut == 0).flatten(1).sum(1)
    assert ((zeros > 0) & (zeros <= 64)).all()
    with pytest.raises(ValueError, match="augment_policy"):
        DiffAugment("rotate")


def test_augmentation_is_differentiable():
    """The generator learns through the augmentation: every policy passes a non-zero gradient back
    to the images it augments (cutout only where it did not cut)."""
    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        torch.manual_seed(0)
        x = (torch.rand(4, 3, 8, 8) * 2 - 1).requires_grad_(True)
        weights = torch.randn(4, 3, 8, 8)
        (DiffAugment(policy, p=1.0)(x) * weights).sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad.abs().flatten(1).sum(1) > 0).all(), policy
    torch.manual_seed(0)
    x = torch.ones(4, 1, 8, 8, requires_grad=True)
    out = DiffAugment("cutout", p=1.0)(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float())  # the cut square passes nothing back, the rest all of it


def test_ada_controller_moves_p_towards_the_target():
    augment = DiffAugment(p=0.0)
    controller = AdaptiveAugmentController(augment, target=0.6, interval=1, speed_kimg=0.1)
    for _ in range(5):
        controller.observe(torch.ones(10))  # D is sure about every real image: overfitting
    assert augment.p > 0.3
    high = augment.p
    for _ in range(5):
        controller.observe(-torch.ones(10))
    assert augment.p < high


def _weights(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.generator.state_dict().items()}


def test_resume_gives_identical_weights(tmp_path):
    data = _tiny_data()
    config = TrainConfig.from_profile("quick", steps=20, **TINY)
    straight = train(data, config, tmp_path / "straight", progress_bar=False)
    half = TrainConfig.from_profile("quick", steps=10, **TINY)
    train(data, half, tmp_path / "resumed", progress_bar=False)
    resumed = train(data, config, tmp_path / "resumed", resume=True, progress_bar=False)
    assert resumed.resumed_from == 10
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state_a = load_checkpoint(straight.checkpoint)
    state_b = load_checkpoint(resumed.checkpoint)
    for key in state_a["D"]:
        assert torch.equal(state_a["D"][key], state_b["D"][key]), key
    assert state_a["augment"]["p"] == state_b["augment"]["p"]


def test_checkpoints_are_pruned_and_weights_only(tmp_path):
    result = train(_tiny_data(), TrainConfig.from_profile("quick", steps=20, keep_checkpoints=2, **TINY), tmp_path, progress_bar=False)
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["ckpt-00000015.pt", "ckpt-00000020.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 20 and state["model_config"]["size"] == 8
    generator, meta = load_generator(result.generator_path)
    labels = np.array([0, 1, 1])
    np.testing.assert_array_equal(generate(generator, labels, seed=3), generate(result.generator, labels, seed=3))


def test_resume_refuses_other_data(tmp_path):
    train(_tiny_data(), TrainConfig.from_profile("quick", steps=5, **TINY), tmp_path, progress_bar=False)
    other = _tiny_data()
    other.images[0] ^= 1
    with pytest.raises(CheckpointError, match="another model config or dataset"):
        train(
            ImageData(other.images, other.labels, other.class_names),
            TrainConfig.from_profile("quick", steps=10, **TINY),
            tmp_path,
            resume=True,
            progress_bar=False,
        )


def test_resume_if_compatible_starts_afresh_over_a_stale_run(tmp_path):
    train(_tiny_data(), TrainConfig.from_profile("quick", steps=5, **TINY), tmp_path, progress_bar=False)
    stale = latest_checkpoint(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "ckpt-00000007.pt").write_bytes(b"garbage")  # the newest one is corrupt too
    other = _tiny_data()
    other.images[0] ^= 1
    result = train(other, TrainConfig.from_profile("quick", steps=5, **TINY), tmp_path, resume="if-compatible", progress_bar=False)
    assert result.resumed_from == 0 and "ckpt-00000007.pt" in result.not_resumed
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["data_hash"] == other.content_hash()  # no stale file left to resume
    assert load_checkpoint(stale)["data_hash"] == other.content_hash()  # same step, rewritten by the fresh run
    again = train(other, TrainConfig.from_profile("quick", steps=10, **TINY), tmp_path, resume="if-compatible", progress_bar=False)
    assert again.resumed_from == 5 and again.not_resumed is None
    with pytest.raises(ValueError, match="resume"):
        train(other, TrainConfig.from_profile("quick", steps=5, **TINY), tmp_path, resume="maybe", progress_bar=False)


def test_training_cli_resume_options(tmp_path):
    from gan_core.data import save_npz
    from gan_core.train import parse_cli

    data_file = save_npz(_tiny_data(), tmp_path / "train.npz")
    base = ["--data", str(data_file), "--run-dir", str(tmp_path / "run")]
    assert parse_cli(base)[3] is False
    assert parse_cli([*base, "--resume"])[3] is True
    assert parse_cli([*base, "--resume", "if-compatible"])[3] == "if-compatible"
    with pytest.raises(SystemExit):
        parse_cli([*base, "--resume", "yes"])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-00000005.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="ckpt-00000005.pt"):
        train(_tiny_data(), TrainConfig.from_profile("quick", steps=10, **TINY), tmp_path, resume=True, progress_bar=False)


def test_divergence_guard_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainConfig.from_profile("quick", steps=20, debug_nan_at_step=13, **TINY)
    with pytest.raises(TrainingDiverged, match="step 13") as info:
        train(_tiny_data(), config, tmp_path, progress_bar=False)
    assert info.value.step == 13
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert last.name == "ckpt-00000010.pt"
    state = load_checkpoint(last)
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def test_progress_callback_reports_every_log_interval(tmp_path):
    events = []
    config = TrainConfig.from_profile("quick", steps=15, **TINY)
    train(_tiny_data(), config, tmp_path, callback=events.append, progress_bar=False)
    assert [e.step for e in events] == [5, 10, 15]
    assert all(e.images_per_s > 0 and np.isfinite(e.d_loss) and 0 <= e.augment_p <= 1 for e in events)


def test_training_is_deterministic_given_a_seed(tmp_path):
    config = TrainConfig.from_profile("quick", steps=6, **TINY)
    a = train(_tiny_data(), config, tmp_path / "a", progress_bar=False)
    b = train(_tiny_data(), config, tmp_path / "b", progress_bar=False)
    c = train(_tiny_data(), TrainConfig.from_profile("quick", steps=6, seed=1, **TINY), tmp_path / "c", progress_bar=False)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_train_config_profiles_and_overrides():
    assert TrainConfig.from_profile("full").steps > TrainConfig.from_profile("quick").steps
    assert TrainConfig.from_profile("quick", steps=7).steps == 7
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_profile("quick", stepz=7)
    with pytest.raises(ValueError, match="training.profile"):
        TrainConfig.from_profile("slow")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    for bad, message in (({"lr_g": "fast"}, "lr_g must be a number, got 'fast'"), ({"steps": 2.5}, "steps must be an int, got 2.5")):
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_profile("quick", **bad)


def test_a_spec_written_with_exponents_reads_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 5e-4 as text; a spec's learning rate and gate written so are numbers."""
    from pipelines.specs import SpecError, load_spec

    spec = tmp_path / "rates.yaml"
    spec.write_text("name: rates\nsource: {kind: builtin, name: mnist-5k}\ntraining: {lr_g: 5e-4, lr_d: 1e-3}\nevaluation: {gates: {min_uplift: 5e-3}}\n")
    loaded = load_spec(spec)
    assert loaded.evaluation.gates.root["min_uplift"] == 5e-3
    assert (loaded.training.train_config().lr_g, loaded.training.train_config().lr_d) == (5e-4, 1e-3)
    spec.write_text("name: rates\nsource: {kind: builtin, name: mnist-5k}\ntraining: {lr_d: -1e-3}\n")
    with pytest.raises(SpecError, match="field 'training': .*invalid value for lr_d: -0.001"):  # read as a number, then checked
        load_spec(spec)
    assert yaml.safe_load("5e-4") == "5e-4"  # the loader leaves PyYAML's own SafeLoader as it was


def test_sampling_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(size=8, num_classes=3, z_dim=8, g_width=4, d_width=4))
    labels = np.array([0, 1, 2, 2, 1, 0, 0])
    first = generate(generator, labels, seed=5, batch_size=3)
    assert first.dtype == np.uint8 and first.shape == (7, 1, 8, 8)
    np.testing.assert_array_equal(first, generate(generator, labels, seed=5, batch_size=3))
    np.testing.assert_array_equal(first, generate(generator, labels, seed=5, batch_size=7))
    assert not np.array_equal(first, generate(generator, labels, seed=6, batch_size=3))
    # One sample regenerates alone from its own seed, from the generator or its folded form.
    seeds = sample_seeds(5, len(labels))
    np.testing.assert_array_equal(generate(generator, labels[4:5], seeds=seeds[4:5]), first[4:5])
    np.testing.assert_array_equal(generate(FoldedGenerator(generator), labels, seed=5), first)
    with pytest.raises(ValueError, match="labels"):
        generate(generator, np.array([3]))


_FREED_MEMORY_PROBE = """
import ctypes, sys
if sys.argv[1] == "sample":
    from gan_core.models import ModelConfig, build_models
    from gan_core.sample import generate
    generate(build_models(ModelConfig(size=8, num_classes=2, z_dim=8, g_width=4, d_width=4))[0], [0, 1])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
block = libc.malloc(8 << 20)
ctypes.memset(block, 1, 8 << 20)
held = rss()
libc.free(block)
print(held - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_sampling_keeps_freed_cpu_memory_for_the_next_batch():
    def handed_back(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _FREED_MEMORY_PROBE, mode], capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert handed_back("plain") >= 6 << 20  # glibc's default: a freed 8 MB block goes back to the kernel
    assert handed_back("sample") < 2 << 20  # after sampling: it stays for the next batch


def test_latents_are_standard_normal():
    z = latents(sample_seeds(0, 4000), 16).numpy()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert len(set(sample_seeds(1, 1000).tolist())) == 1000
    assert (sample_seeds(2, 100) >= 0).all()
