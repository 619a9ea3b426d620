"""The few-labels path in gan_core: classical augmentation, batches with a synthetic share, labels
kept per class with the rest pooled, pseudo-labels and self-training, the dose study's figures,
filtered samples that regenerate from their seeds, and unlabelled sources with their bad inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.consistency import ConsistencyConfig, consistency_train, strong_view
from gan_core.classifier import BatchSource, ClassifierConfig, classifier_steps, random_affine, train_classifier
from gan_core.data import UNLABELLED, DataError, ImageData, load_unlabelled
from gan_core.export import filtered_samples
from gan_core.sample import generate
from gan_core.semi import check_teacher, pseudo_labelled, self_train

BARS = ["top", "middle", "bottom"]


def bars(per_class: int, seed: int = 0, size: int = 8) -> ImageData:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.integers(0, 40, (len(labels), 1, size, size)).astype(np.uint8)
    for label, rows in enumerate((slice(0, 3), slice(3, 5), slice(5, 8))):
        images[labels == label, :, rows, :] += 200
    return ImageData(images, labels, BARS)


SMALL = ClassifierConfig(steps=40, width=4, feature_dim=8, batch_size=12, max_translate=0, max_rotation=0, max_scale=0)


def test_random_affine_moves_each_image_and_keeps_the_background_black():
    x = torch.full((64, 1, 16, 16), -1.0)
    x[:, :, 6:10, 6:10] = 1.0
    config = ClassifierConfig(max_translate=0.125, max_rotation=10, max_scale=0.1)
    out = random_affine(x, config, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1.0 - 1e-6 and out.max() <= 1.0 + 1e-6
    assert torch.allclose(out[:, :, 0, :], torch.tensor(-1.0))  # nothing bright reaches the border
    moved = [not torch.allclose(out[i], x[i], atol=1e-3) for i in range(len(x))]
    assert sum(moved) > 50 and not torch.allclose(out[0], out[1])  # drawn per image, not per batch
    again = random_affine(x, config, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    off = ClassifierConfig(max_translate=0, max_rotation=0, max_scale=0)
    assert random_affine(x, off, torch.Generator()) is x


def test_the_judge_trains_for_enough_steps_whatever_the_set_size():
    assert classifier_steps(ClassifierConfig(), 160) == 600  # 12 epochs of 160 images would be 36 steps
    assert classifier_steps(ClassifierConfig(), 64_000) == 12 * 1000
    assert classifier_steps(ClassifierConfig(steps=50), 160) == 50


def test_a_synthetic_share_changes_the_batches_not_the_step_count():
    real, other = bars(10), bars(10, seed=1)
    wrong = ImageData(other.images, other.labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="class names"):
        train_classifier(real, SMALL, extra=wrong, extra_share=0.5)
    with pytest.raises(ValueError, match="extra_share"):
        train_classifier(real, SMALL, extra=other, extra_share=1.0)
    plain = train_classifier(real, SMALL)
    mixed = train_classifier(real, SMALL, extra=other, extra_share=0.5)
    same = train_classifier(real, SMALL, extra=other, extra_share=0.5)
    assert not np.allclose(plain.logits(real.images), mixed.logits(real.images))
    assert np.array_equal(mixed.logits(real.images), same.logits(real.images))  # seeded
    # A share larger than the extra set is drawn with replacement.
    assert train_classifier(real, SMALL, extra=other.subset(np.arange(2)), extra_share=0.5).accuracy(real) >= 0


def test_a_soft_labelled_source_trains_on_its_probabilities_not_its_labels():
    """Images of every class whose hard labels all say 'bottom' but whose soft labels put 0.9 on the
    true class: at 0.9 of every batch, the hard labels teach 'bottom', the soft ones the truth."""
    real, other = bars(2), bars(30, seed=1)
    mislabelled = ImageData(other.images, np.full(len(other), 2), BARS)
    probs = np.full((len(other), 3), 0.05, np.float32)
    probs[np.arange(len(other)), other.labels] = 0.9
    config = ClassifierConfig(steps=80, width=4, feature_dim=8, batch_size=20, max_translate=0, max_rotation=0, max_scale=0)
    test = bars(10, seed=2)
    hard = train_classifier(real, config, sources=(BatchSource(mislabelled, 0.9),))
    soft = train_classifier(real, config, sources=(BatchSource(mislabelled, 0.9, probs),))
    assert (hard.predict(test.images) == 2).mean() > 0.9 and soft.accuracy(test) > 0.9
    both = train_classifier(real, config, sources=(BatchSource(mislabelled, 0.3, probs), BatchSource(other, 0.3)))  # two sources in one batch
    assert both.accuracy(test) > 0.9
    with pytest.raises(ValueError, match=r"probs: expected 90 × 3 class probabilities, got \(90, 2\)"):
        train_classifier(real, config, sources=(BatchSource(mislabelled, 0.5, probs[:, :2]),))
    with pytest.raises(ValueError, match="leave part of each batch to the data"):
        train_classifier(real, config, sources=(BatchSource(other, 0.5), BatchSource(other, 0.5)))


def test_keep_labels_per_class_pools_the_rest():
    data = bars(10)
    labelled, pool = data.keep_labels_per_class(3, seed=4)
    assert labelled.class_counts() == {"top": 3, "middle": 3, "bottom": 3} and len(pool) == 21
    assert np.array_equal(labelled.images, data.take_per_class(3, seed=4).images)
    seen = {image.tobytes() for image in labelled.images}
    assert not any(image.tobytes() in seen for image in pool)  # disjoint
    # The benchmark's view of the same draw: the same pool, its true labels kept.
    same, rest = data.labelled_and_rest(3, seed=4)
    assert np.array_equal(same.images, labelled.images) and np.array_equal(rest.images, pool)
    true_label = {image.tobytes(): label for image, label in zip(data.images, data.labels)}
    assert [true_label[image.tobytes()] for image in rest.images] == list(rest.labels) and rest.class_counts() == {"top": 7, "middle": 7, "bottom": 7}
    with pytest.raises(DataError, match="class 'top' has 10 images, expected at least 11"):
        data.keep_labels_per_class(11)


def test_pseudo_labels_and_self_training():
    labelled, pool = bars(20).keep_labels_per_class(2, seed=0)
    judge = train_classifier(labelled, SMALL)
    guesses = pseudo_labelled(judge, pool, min_confidence=0.6)
    assert len(guesses.confidence) == len(pool) and guesses.data.class_names == BARS
    assert (guesses.confidence[guesses.confidence >= 0.6] >= 0.6).all() and len(guesses.data) == (guesses.confidence >= 0.6).sum()
    assert np.array_equal(guesses.data.labels, judge.predict(guesses.data.images))
    assert pseudo_labelled(judge, pool, min_confidence=0.0).acceptance == 1.0
    with pytest.raises(DataError, match="pseudo_label_confidence"):
        pseudo_labelled(judge, pool, min_confidence=1.0)
    # Self-training uses the pool (another classifier than the labelled-only one); no pool, the same one.
    trained = self_train(labelled, pool, SMALL, min_confidence=0.6)
    assert not np.allclose(trained.logits(pool), judge.logits(pool))
    alone = self_train(labelled, pool[:0], SMALL)
    assert np.array_equal(alone.logits(pool), judge.logits(pool))


def test_the_strong_view_changes_every_image_and_keeps_shape_and_range_for_one_and_three_channels():
    for channels in (1, 3):
        x = torch.rand(6, channels, 16, 16) * 2 - 1
        strong = strong_view(x, ClassifierConfig(), ConsistencyConfig(), torch.Generator().manual_seed(0))
        assert strong.shape == x.shape and strong.min() >= -1 and strong.max() <= 1
        assert ((strong - x).abs().flatten(1).max(dim=1).values > 0.1).all()


def test_consistency_training_learns_from_the_pool_and_without_one_is_the_supervised_judge():
    labelled, pool = bars(20).keep_labels_per_class(2, seed=0)
    few_steps = ConsistencyConfig(steps=10, threshold=0.5)
    judge = train_classifier(labelled, SMALL)
    trained = consistency_train(labelled, pool, SMALL, few_steps)
    assert not np.allclose(trained.logits(pool), judge.logits(pool))
    assert np.array_equal(consistency_train(labelled, pool, SMALL, few_steps).logits(pool), trained.logits(pool))  # seeded
    assert np.array_equal(consistency_train(labelled, pool[:0], SMALL, few_steps).logits(pool), judge.logits(pool))
    # A threshold no weak view reaches leaves the pool out of the loss: only the labelled images train.
    unreachable = consistency_train(labelled, pool, SMALL, replace(few_steps, threshold=1.5, pool_weight=1.0))
    labelled_only = consistency_train(labelled, pool, SMALL, replace(few_steps, threshold=0.5, pool_weight=0.0))
    assert np.allclose(unreachable.logits(pool), labelled_only.logits(pool), atol=1e-5)


def test_consistency_training_takes_the_export_into_every_labelled_batch_under_its_hard_or_soft_labels():
    """DPT-style: a source joins the labelled stream of both stages. Under labels shifted by one
    class, at 0.75 of each batch, the judge learns the shift; soft labels that say the shifted class
    train exactly as those hard labels do, whatever the source's own hard labels say."""
    labelled, pool = bars(20).keep_labels_per_class(2, seed=0)
    holdout, synthetic = bars(10, seed=5), bars(20, seed=7)
    shifted = ImageData(synthetic.images, (synthetic.labels + 1) % 3, BARS)
    few_steps = ConsistencyConfig(steps=20, threshold=0.5)
    right = consistency_train(labelled, pool, SMALL, few_steps, (BatchSource(synthetic, 0.75),))
    wrong = consistency_train(labelled, pool, SMALL, few_steps, (BatchSource(shifted, 0.75),))
    soft_wrong = consistency_train(labelled, pool, SMALL, few_steps, (BatchSource(synthetic, 0.75, np.eye(3)[shifted.labels]),))
    assert right.accuracy(holdout) >= 0.9 and wrong.accuracy(holdout) <= 0.4
    assert np.allclose(soft_wrong.logits(holdout.images), wrong.logits(holdout.images), atol=1e-3)
    with pytest.raises(ValueError, match="class names"):
        consistency_train(labelled, pool, SMALL, few_steps, (BatchSource(ImageData(synthetic.images, synthetic.labels, ["a", "b", "c"]), 0.5),))


def test_a_teacher_is_used_only_when_its_holdout_shows_it_beats_chance_and_the_majority_class():
    holdout = bars(4, seed=3)  # 12 images, 4 per class
    good = check_teacher(train_classifier(bars(10), SMALL), holdout)
    assert good.accuracy == 1.0 and good.majority_share == pytest.approx(1 / 3) and good.useful
    assert good.p_value == pytest.approx((1 / 3) ** 12) and good.reason().startswith("teacher used: holdout accuracy 1.0000 on 12 images")

    class Constant:  # always answers class 0, as a teacher that learnt nothing but the prior would
        def predict(self, images):
            return np.zeros(len(images), np.int64)

    skewed = ImageData(holdout.images[:6], np.array([0, 0, 0, 0, 0, 1]), BARS)
    majority = check_teacher(Constant(), skewed)  # 5 of 6 right, which is what the majority class gets
    assert majority.accuracy == pytest.approx(5 / 6) and majority.majority_share == pytest.approx(5 / 6) and not majority.useful
    assert "teacher not used (not shown better than chance or the majority class at p < 0.05)" in majority.reason()
    two_classes = ImageData(np.zeros((20, 1, 8, 8), np.uint8), np.repeat([0, 1], 10), ["a", "b"])
    coin = check_teacher(Constant(), two_classes)  # the new user's two-class folder: 0.50 on 20 images
    assert coin.accuracy == 0.5 and coin.p_value > 0.5 and not coin.useful
    fourteen = ImageData(two_classes.images, np.array([0] * 14 + [1] * 6), ["a", "b"])
    assert not check_teacher(Constant(), fourteen).useful  # 0.70 is only the majority share
    with pytest.raises(DataError, match="holdout is empty"):
        check_teacher(Constant(), ImageData(np.zeros((0, 1, 8, 8), np.uint8), np.zeros(0, np.int64), ["a", "b"]))


def test_filtered_samples_are_accepted_and_regenerate_from_their_seeds(tiny_generator):
    judge = train_classifier(bars(20), SMALL)
    generator = tiny_generator()
    unfiltered = filtered_samples(generator, judge, 6, 0.0, seed=3)
    assert unfiltered.class_counts() == {"top": 6, "middle": 6, "bottom": 6}
    assert np.array_equal(unfiltered.images[:6], generate(generator, np.zeros(6, np.int64), seed=3)[:6])
    # A bar that about half of each class's unfiltered draws clear (an untrained generator).
    drawn = filtered_samples(generator, judge, 60, 0.0, seed=9)
    confidence = judge.probabilities(drawn.images)[np.arange(len(drawn)), drawn.labels]
    bar = float(min(np.median(confidence[drawn.labels == c]) for c in range(3)))
    picky = filtered_samples(generator, judge, 6, bar, seed=3)
    kept = judge.probabilities(picky.images)[np.arange(len(picky)), picky.labels]
    assert (kept >= bar).all() and not np.array_equal(picky.images, unfiltered.images)


def _save(path, array, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_a_flat_unlabelled_folder_loads_and_class_folders_are_ignored(tmp_path):
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat"
    for i in range(4):
        _save(flat / f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    _save(flat / "some-class" / "x.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    pool = load_unlabelled({"kind": "image_folder", "path": str(flat)}, size=8, channels=1)
    assert len(pool) == 5 and pool.class_names == [UNLABELLED] and pool.images.shape == (5, 1, 8, 8)
    np.savez(tmp_path / "pool.npz", images=rng.integers(0, 256, (7, 8, 8), dtype=np.uint8))  # no labels array
    assert len(load_unlabelled({"kind": "npz", "path": str(tmp_path / "pool.npz")}, size=8, channels=1)) == 7


def test_bad_unlabelled_inputs_name_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_unlabelled({"kind": "image_folder", "path": str(empty)}, size=8, channels=1)
    corrupt = tmp_path / "corrupt"
    _save(corrupt / "good.png", np.zeros((8, 8), np.uint8))
    (corrupt / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"bad\.png: (not a readable|corrupt)"):
        load_unlabelled({"kind": "image_folder", "path": str(corrupt)}, size=8, channels=1)
    wrong_size = tmp_path / "wrong-size"
    _save(wrong_size / "small.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DataError, match=r"small\.png: is 6×6 .* image.fit 'exact' expects 8×8"):
        load_unlabelled({"kind": "image_folder", "path": str(wrong_size)}, size=8, channels=1, fit="exact")
    np.savez(tmp_path / "floats.npz", images=np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"floats\.npz: images: expected uint8 pixels"):
        load_unlabelled({"kind": "npz", "path": str(tmp_path / "floats.npz")})
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"none\.npz: no images"):
        load_unlabelled({"kind": "npz", "path": str(tmp_path / "none.npz")})


def test_find_and_annotate_exports(tmp_path, monkeypatch, tiny_generator, tiny_plan, lineage):
    from gan_core.export import ExportError, annotate_export, export_samples, read_export, read_manifest, verify_export
    from pipelines.layout import find_export

    root = tmp_path / "var"
    older, newer = (root / "exports" / "team-a" / f"v{v}" / "e" for v in (1, 2))
    for destination in (older, newer):
        export_samples(tiny_generator(), tiny_plan(), destination, lineage=lineage, root=root)
    with pytest.raises(ExportError, match="no recommended export of spec 'team-a'.*uplift gate"):
        find_export("team-a", root=root)
    annotate_export(older, "utility", {"recommended": True, "recommended_at": "2026-11-24T02:00:00Z"})
    annotate_export(newer, "utility", {"recommended": False})
    assert find_export("team-a", root=root) == older and find_export("team-a", "latest", root=root) in (older, newer)
    verify_export(older)  # the parts and their checksums are untouched
    assert read_export(find_export("team-a", root=root)).num_rows == 75 and read_manifest(older)["utility"]["recommended"] is True
    annotate_export(newer, "utility", {"recommended": True, "recommended_at": "2026-11-25T02:00:00Z"})
    assert find_export("team-a", root=root) == newer  # the newest recommendation wins
    with pytest.raises(ExportError, match="describes the parts"):
        annotate_export(newer, "files", [])
    for bad in ("../team-a", "Team", "a/b", ""):
        with pytest.raises(ExportError, match="spec: expected a spec name"):
            find_export(bad, root=root)
    with pytest.raises(ExportError, match="which: expected 'recommended' or 'latest'"):
        find_export("team-a", "best", root=root)
    monkeypatch.setenv("GANPIPE_HOME", str(root))  # the default root is the pipeline's storage root
    assert find_export("team-a") == newer
