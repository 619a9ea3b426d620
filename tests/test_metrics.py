"""Metric math against independent computations, sanity orderings on real digits, PRDC against the
published reference, memorization, the Inception loading path, uplift and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch

from gan_core.classifier import ClassifierConfig, train_classifier
from gan_core.data import ImageData, load_source
from gan_core.metrics import (
    INCEPTION_ENV,
    EvaluationConfig,
    InceptionBackbone,
    MetricsError,
    TeacherPool,
    Uplift,
    augmentation_uplift,
    default_metrics,
    evaluate,
    fid_from_features,
    kid_from_features,
    known_metrics,
    make_backbone,
    memorization,
    metric_info,
    nearest_distances,
    prdc,
    resolve_inception_weights,
    resolve_metric,
    write_random_inception_weights,
)
from gan_core.models import Generator, ModelConfig


@pytest.fixture(scope="module")
def digits():
    data = load_source({"kind": "builtin", "name": "mnist-5k"}, size=32, channels=1)
    train, holdout = data.split(0.2, seed=0)
    judge = train_classifier(train, ClassifierConfig(steps=124, width=16))  # 2 epochs
    return train, holdout, judge


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 16))
    b = rng.normal(size=(1500, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    assert fid_from_features(a, b) == pytest.approx(_scipy_fid(a, b), abs=1e-3)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-3)


def test_fid_orders_real_noise_and_one_class(digits):
    train, holdout, judge = digits
    backbone, _ = make_backbone("domain", judge)
    train_f, _ = backbone.extract(train.images)
    holdout_f, _ = backbone.extract(holdout.images)
    noise = np.random.default_rng(0).integers(0, 256, holdout.images.shape, dtype=np.uint8)
    noise_f, _ = backbone.extract(noise)
    ones = train.images[train.labels == 1]
    ones_f, _ = backbone.extract(ones[: len(holdout)])
    real = fid_from_features(train_f, holdout_f)
    assert real * 10 < fid_from_features(train_f, noise_f)
    assert real * 10 < fid_from_features(train_f, ones_f)


def test_kid_identical_sets_is_near_zero_and_positive_for_shifted():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(600, 32))
    mean, _ = kid_from_features(a, a.copy(), subset_size=300)
    shifted, _ = kid_from_features(a, a + 1.0, subset_size=300)
    # The unbiased estimator on one set against itself is off zero by O(k(x, x) / m) only.
    assert abs(mean) < 0.05 and abs(mean) < 0.01 * shifted


def _reference_prdc(real, fake, k):
    """The formulas of clovaai/prdc, written out independently on a full distance matrix."""

    def radii(x):
        d = scipy.spatial.distance.cdist(x, x)
        return np.partition(d, k, axis=1)[:, k]

    real_r, fake_r = radii(real), radii(fake)
    d = scipy.spatial.distance.cdist(real, fake)
    return {
        "precision": (d < real_r[:, None]).any(axis=0).mean(),
        "recall": (d < fake_r[None, :]).any(axis=1).mean(),
        "density": (d < real_r[:, None]).sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) < real_r).mean(),
    }


def test_prdc_agrees_with_an_independent_implementation_in_64_dimensions():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 64))
    fake = rng.normal(size=(1500, 64)) * 1.1 + 0.05
    ours, reference = prdc(real, fake, k=5, chunk=512), _reference_prdc(real, fake, 5)
    for key in reference:
        assert ours[key] == pytest.approx(reference[key], abs=2e-3), key


@pytest.mark.slow
def test_prdc_matches_the_published_gaussian_reference():
    # clovaai/prdc's README example draws 10,000 points per set from a 1000-dimensional standard
    # Gaussian (not 64-dimensional) and prints precision 0.4772, recall 0.4705, density 1.0555,
    # coverage 0.9735; density varies by about ±0.1 from draw to draw at this N.
    rng = np.random.default_rng(0)
    real = rng.standard_normal(size=(10_000, 1000), dtype=np.float32)
    fake = rng.standard_normal(size=(10_000, 1000), dtype=np.float32)
    result = prdc(real, fake, k=5)
    assert result["precision"] == pytest.approx(0.48, abs=0.04)
    assert result["recall"] == pytest.approx(0.47, abs=0.04)
    assert result["density"] == pytest.approx(1.06, abs=0.2)
    assert result["coverage"] == pytest.approx(0.97, abs=0.02)


def test_prdc_of_two_draws_and_a_shifted_set_in_64_dimensions():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(10_000, 64)).astype(np.float32)
    fake = rng.normal(size=(10_000, 64)).astype(np.float32)
    same = prdc(real, fake, k=5)
    assert 0.6 < same["precision"] < 0.75 and 0.6 < same["recall"] < 0.75
    assert same["density"] == pytest.approx(1.0, abs=0.1) and same["coverage"] > 0.95
    shifted = prdc(real[:3000], fake[:3000] + 3.0, k=5)
    assert shifted["precision"] < 0.05 and shifted["coverage"] < 0.05 and shifted["density"] < 0.05


def test_memorization_flags_planted_copies():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 8)).astype(np.float32)
    holdout = rng.normal(size=(300, 8)).astype(np.float32)
    synthetic = rng.normal(size=(200, 8)).astype(np.float32)
    synthetic[:20] = train[100:120]  # 10% exact copies
    result = memorization(synthetic, train, holdout, "test")
    assert result.fraction_near_copies == pytest.approx(0.10, abs=0.02)
    assert {i for i, _, _ in result.closest} <= set(range(20))
    assert all(j == i + 100 for i, j, _ in result.closest)
    clean = memorization(synthetic[20:], train, holdout, "test")
    assert clean.fraction_near_copies < 0.03


def test_inception_weights_from_a_configured_path(tmp_path, monkeypatch):
    weights = write_random_inception_weights(tmp_path / "random-inception.pth")
    monkeypatch.setenv(INCEPTION_ENV, str(weights))
    with pytest.raises(MetricsError, match="not the official Inception weights"):
        resolve_inception_weights()
    safe = resolve_inception_weights(allow_unverified=True)
    backbone = InceptionBackbone(safe, resize="tf1")
    features, logits = backbone.extract(np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8))
    assert features.shape == (3, 2048) and logits.shape == (3, 1008)
    assert np.isfinite(features).all()
    net, reason = make_backbone("auto", None, allow_unverified=True)
    assert net.name == "inception" and "available" in reason


def test_inception_refuses_a_pickle_with_code(tmp_path):
    import pickle

    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(print))
    with pytest.raises(MetricsError, match="not a weights-only state dict"):
        resolve_inception_weights(bad, allow_unverified=True)


def test_inception_offline_without_weights_names_the_setting(tmp_path, monkeypatch, digits):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    with pytest.raises(MetricsError, match=INCEPTION_ENV):
        resolve_inception_weights(download=False)
    # The real download path, against a port where nothing listens (as offline).
    with pytest.raises(MetricsError, match=f"could not be downloaded.*{INCEPTION_ENV}"):
        resolve_inception_weights(url="http://127.0.0.1:9/weights-inception-2015-12-05-6726825d.pth")
    with pytest.raises(MetricsError, match=INCEPTION_ENV):
        resolve_inception_weights(tmp_path / "missing.pth")
    net, reason = make_backbone("auto", digits[2])
    assert net.name == "domain" and INCEPTION_ENV in reason


def _blobs(n, rng):
    labels = np.repeat([0, 1], n)
    images = np.zeros((2 * n, 1, 8, 8), np.uint8)
    images[labels == 0, :, :4] = 200
    images[labels == 1, :, 4:] = 200
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    return ImageData(images, labels, ["top", "bottom"])


def test_uplift_runs_on_tiny_data_with_several_seeds():
    rng = np.random.default_rng(0)
    tiny = ClassifierConfig(steps=15, width=4, feature_dim=8, batch_size=8)
    result = augmentation_uplift(_blobs(20, rng), _blobs(10, rng), _blobs(20, rng), seeds=(0, 1, 2), classifier=tiny, shares=(0.25, 0.5))
    assert result.seeds == [0, 1, 2] and result.n_real == 40 and result.classifier_steps == 15
    assert list(result.per_seed) == ["real", "share_0.25", "share_0.5", "synthetic"] and all(len(v) == 3 for v in result.per_seed.values())
    for mean, std in (result.real_only, result.real_plus_synthetic, result.synthetic_only):
        assert 0.5 <= mean <= 1.0 and std >= 0
    # Half the holdout chooses the recipe, the other half scores it; without a pool the baseline is real only.
    assert result.selection_images == 10 and result.holdout_images == 10 and result.ssl is None and result.without_synthetic == "real"
    chooses = {arm: result.correct[arm][:, result.selection].mean() for arm in ("share_0.25", "share_0.5", "synthetic")}
    assert result.recommended == max(chooses, key=chooses.get)
    assert result.gain == pytest.approx(np.mean(result.per_seed[result.recommended]) - np.mean(result.per_seed["real"]))
    low, high = result.gain_interval()
    assert low <= result.gain <= high
    summary = result.summary()
    assert summary["arm"] == result.recommended and summary["gain_ci95"] == [low, high] and summary["seeds"] == 3 and summary["classifier_steps"] == 15
    assert summary["gain_over_real"] == summary["gain"] and summary["ssl"] is None and summary["baseline"] == "real only"
    assert summary["holdout_images"] == 10 and summary["min_detectable_gain"] == pytest.approx(max((high - low) / 2, 4 / 10))
    assert "| real + synthetic, 0.25 of each batch" in result.table() and "**recommended**" in result.table() and "10 holdout images" in result.table()


def test_with_a_pool_the_study_measures_ssl_and_ssl_plus_synthetic_with_hard_and_soft_labels():
    """The competitor is the better of the pool under the teacher's hard and soft labels; every ssl +
    synthetic arm uses it; the soft arms train on the export's probabilities (which change the result)."""
    rng = np.random.default_rng(0)
    tiny = ClassifierConfig(steps=15, width=4, feature_dim=8, batch_size=8)
    labelled, holdout, synthetic, unlabelled = _blobs(4, rng), _blobs(20, rng), _blobs(20, rng), _blobs(30, rng)
    probs = np.eye(2)[unlabelled.labels] * 0.9 + 0.05
    pool = TeacherPool(unlabelled.images, probs, min_confidence=0.9)
    uniform = np.full((len(synthetic), 2), 0.5)  # soft labels that say nothing: the soft arms cannot learn the classes from them
    result = augmentation_uplift(labelled, holdout, synthetic, seeds=(0, 1), classifier=tiny, shares=(0.5,), pool=pool, synthetic_probs=uniform)
    ssl = result.ssl
    assert ssl in ("ssl_hard", "ssl_soft", "ssl_consistency") and result.n_pool == 60
    kind = result.recipes[ssl].pool
    assert set(result.correct) == {
        "real",
        "ssl_hard",
        "ssl_soft",
        "ssl_consistency",
        "share_0.5",
        "ssl+synthetic_hard_share_0.5",
        "ssl+synthetic_soft_share_0.5",
        "synthetic",
    }
    assert all(result.recipes[arm].pool == kind for arm in result.correct if arm.startswith("ssl+"))
    figures = result.figures()
    assert figures["uplift_gain"] == pytest.approx(figures["uplift_recommended"] - figures["uplift_baseline_accuracy"])
    assert figures["uplift_gain_over_ssl"] == pytest.approx(figures["uplift_recommended"] - figures["uplift_ssl"])
    assert result.without_synthetic in ("real", ssl) and result.summary()["ssl"].startswith("ssl (")
    assert not np.array_equal(result.correct["ssl+synthetic_hard_share_0.5"], result.correct["ssl+synthetic_soft_share_0.5"])
    assert "gain over ssl" in result.table() and "**competitor**" in result.table()
    real_only = Uplift(result.correct, result.shares, result.seeds, 8, 40, 15, recipes=result.recipes, selection=result.selection, baseline="real")
    assert real_only.without_synthetic == "real" and real_only.gain == pytest.approx(figures["uplift_gain_over_real"])


def test_consistency_training_is_an_ssl_candidate_and_ssl_plus_synthetic_builds_on_it_when_it_ranks_first():
    """A teacher whose pseudo-labels are all wrong makes both teacher-labelled ssl arms learn the
    classes backwards; consistency training on the pool asks the teacher nothing, so it is the
    competitor, and the ssl + synthetic arms are consistency training with the export beside."""
    rng = np.random.default_rng(0)
    tiny = ClassifierConfig(steps=30, width=4, feature_dim=8, batch_size=8)
    labelled, holdout, synthetic, unlabelled = _blobs(4, rng), _blobs(20, rng), _blobs(20, rng), _blobs(30, rng)
    backwards = TeacherPool(unlabelled.images, np.eye(2)[1 - unlabelled.labels] * 0.9 + 0.05, min_confidence=0.9)
    result = augmentation_uplift(labelled, holdout, synthetic, seeds=(0, 1), classifier=tiny, shares=(0.5,), pool=backwards, mixes=["ssl"], labels=["hard"])
    assert result.recipes["ssl_consistency"].pool == "consistency" and result.recipes["ssl_consistency"].synthetic is None
    assert result.ssl == "ssl_consistency" and result.summary()["ssl"] == "ssl (consistency training on the pool)"
    assert result.arm("ssl_consistency")[0] > max(result.arm("ssl_hard")[0], result.arm("ssl_soft")[0])
    assert result.recipes["ssl+synthetic_hard_share_0.5"].pool == "consistency"
    assert (
        result.recipes["ssl+synthetic_hard_share_0.5"].describe()
        == "ssl + synthetic, 0.5 of each batch, the generator's labels, with consistency training on the pool"
    )


def test_a_test_split_scores_every_classifier_of_the_study_and_decides_nothing():
    """Beside the holdout, each arm's classifier of each seed is also right or wrong on every image of a
    test split. Given the holdout itself as the test split, that record equals the holdout's image by
    image; the recipes chosen and every figure are those of the same study without it."""
    rng = np.random.default_rng(0)
    tiny = ClassifierConfig(steps=10, width=4, feature_dim=8, batch_size=8)
    labelled, holdout, synthetic, unlabelled = _blobs(4, rng), _blobs(10, rng), _blobs(10, rng), _blobs(10, rng)
    pool = TeacherPool(unlabelled.images, np.eye(2)[unlabelled.labels] * 0.9 + 0.05, min_confidence=0.9)
    study = dict(seeds=(0, 1), classifier=tiny, shares=(0.5,), pool=pool, mixes=["ssl"], labels=["hard"])
    alone = augmentation_uplift(labelled, holdout, synthetic, **study)
    beside = augmentation_uplift(labelled, holdout, synthetic, **study, test=holdout)
    assert alone.test_correct == {} and list(beside.test_correct) == list(beside.correct)
    for arm, right in beside.test_correct.items():
        assert right.shape == (2, len(holdout)) and np.array_equal(right, beside.correct[arm])
    assert beside.figures() == alone.figures() and beside.recommended == alone.recommended and beside.ssl == alone.ssl
    assert "test_correct" not in beside.to_dict()
    other = augmentation_uplift(labelled, holdout, synthetic, **study, test=_blobs(30, rng))
    assert {right.shape for right in other.test_correct.values()} == {(2, 60)}
    wrong = ImageData(holdout.images, holdout.labels, ["left", "right"])
    with pytest.raises(MetricsError, match=r"test: expected images of the holdout's shape .* and classes \['top', 'bottom'\]"):
        augmentation_uplift(labelled, holdout, synthetic, **study, test=wrong)


def test_mixes_and_labels_leave_arms_with_synthetic_data_out_and_the_figures_follow():
    """A shorter study (the demo's): only ssl + synthetic with soft labels beside real, the ssl
    candidates and synthetic only; its figures have no real + synthetic entries; unknown names are refused."""
    rng = np.random.default_rng(0)
    tiny = ClassifierConfig(steps=10, width=4, feature_dim=8, batch_size=8)
    labelled, holdout, synthetic, unlabelled = _blobs(4, rng), _blobs(10, rng), _blobs(10, rng), _blobs(10, rng)
    pool = TeacherPool(unlabelled.images, np.eye(2)[unlabelled.labels] * 0.9 + 0.05, min_confidence=0.9)
    probs = np.eye(2)[synthetic.labels] * 0.8 + 0.1
    study = dict(seeds=(0,), classifier=tiny, shares=(0.5,), pool=pool, synthetic_probs=probs)
    result = augmentation_uplift(labelled, holdout, synthetic, **study, mixes=["ssl"], labels=["soft"])
    kind = result.recipes[result.ssl].pool
    assert list(result.correct) == ["real", "ssl_hard", "ssl_soft", "ssl_consistency", "ssl+synthetic_soft_share_0.5", "synthetic"]
    assert result.recipes["ssl+synthetic_soft_share_0.5"].pool == kind and result.real_plus_synthetic is None
    figures = result.figures()
    assert "uplift_real_plus_synthetic" not in figures and "uplift_gain_share_0.5" not in figures and "uplift_gain_over_ssl" in figures
    assert result.recommended in ("ssl+synthetic_soft_share_0.5", "synthetic")
    real_hard = augmentation_uplift(labelled, holdout, synthetic, **study, mixes=["real"], labels=["hard"])
    assert (
        list(real_hard.correct) == ["real", "ssl_hard", "ssl_soft", "ssl_consistency", "share_0.5", "synthetic"]
        and "uplift_real_plus_synthetic" in real_hard.figures()
    )
    # Without a pool the only mix is real + synthetic, whatever `mixes` says; soft labels go with it.
    no_pool = augmentation_uplift(labelled, holdout, synthetic, **{**study, "pool": None}, mixes=["ssl"])
    assert list(no_pool.correct) == ["real", "share_0.5", "real+synthetic_soft_share_0.5", "synthetic"]
    for bad in (dict(mixes=["pool"]), dict(labels=[]), dict(labels=["hard", "fuzzy"])):
        with pytest.raises(MetricsError, match="mixes|labels"):
            augmentation_uplift(labelled, holdout, synthetic, **study, **bad)


def test_the_holdout_images_that_score_never_choose_the_recipe():
    """Arm A is better on the images that choose, arm B on those that score: A is recommended, and its
    gain is measured on the scoring images only (where it is below B's)."""
    n, seeds = 200, 3
    selection = np.zeros(n, bool)
    selection[:100] = True
    real = np.zeros((seeds, n), np.uint8)
    a, b = real.copy(), real.copy()
    a[:, :60] = 1  # right on 60 choosing images, none scoring
    b[:, 100:180] = 1  # right on 80 scoring images, none choosing
    uplift = Uplift({"real": real, "share_0.5": a, "share_0.25": b, "synthetic": real}, [0.25, 0.5], list(range(seeds)), 10, 10, 600, selection=selection)
    assert uplift.recommended == "share_0.5" and uplift.gain == 0.0 and uplift.gain_at(0.25) == pytest.approx(0.8)
    assert uplift.holdout_images == 100 and uplift.figures()["uplift_selection_images"] == 100


def _planted(n_images: int, better_images: int, seeds: int = 5, noise: float = 0.0) -> Uplift:
    """An arm right on `better_images` more of `n_images` holdout images than real only, with every seed;
    with `noise`, that share of images flips in either arm at random, per seed."""
    rng = np.random.default_rng(1)
    real = np.zeros((seeds, n_images), np.uint8)
    real[:, : n_images * 9 // 10] = 1  # real only gets 90% right
    better = real.copy()
    better[:, n_images * 9 // 10 : n_images * 9 // 10 + better_images] = 1
    for arm in (real, better):
        flips = rng.random(arm.shape) < noise
        arm[flips] = 1 - arm[flips]
    return Uplift({"real": real, "share_0.5": better, "synthetic": real}, [0.5], list(range(seeds)), 10, 10, 600)


def test_the_gains_interval_covers_the_holdouts_sampling_not_only_the_seeds():
    """One image more right with every seed is +2.5 points on 40 images: identical over seeds, so a
    seeds-only interval would be +0.025 to +0.025. Resampling the holdout images shows it cannot be
    told from 0; 30 more of 1,000 can."""
    small = _planted(40, 1)
    low, high = small.gain_interval()
    assert small.gain == pytest.approx(0.025) and low <= 0 < 0.025 <= high
    assert small.min_detectable_gain >= 4 / 40 and small.figures()["uplift_holdout_images"] == 40
    same = _planted(40, 0)  # every arm right on the same images: no spread at all, yet 40 images still cannot show under 4 of them
    assert same.gain_interval() == (0.0, 0.0) and same.min_detectable_gain == pytest.approx(0.1)
    large = _planted(1000, 30)
    low, high = large.gain_interval()
    assert 0 < low < 0.03 < high and large.min_detectable_gain < 0.03
    # With one seed it is the bootstrap of the holdout alone: close to the normal interval of the paired differences.
    single = _planted(1000, 30, seeds=1, noise=0.05)
    differences = single.correct["share_0.5"].astype(float)[0] - single.correct["real"][0]
    half = 1.96 * differences.std(ddof=1) / np.sqrt(len(differences))
    assert single.gain_interval() == pytest.approx((differences.mean() - half, differences.mean() + half), abs=0.004)
    assert single.gain_interval(0.99)[0] < single.gain_interval()[0]
    # Noise from seed to seed widens it further than the holdout alone.
    noisy = _planted(1000, 30, noise=0.05)
    assert noisy.min_detectable_gain > large.min_detectable_gain


def test_uplift_needs_a_fixed_step_count():
    data = ImageData(np.zeros((4, 1, 8, 8), np.uint8), np.array([0, 0, 1, 1]), ["a", "b"])
    # Epochs would give real+synthetic (the larger set) more optimizer steps than real only.
    with pytest.raises(MetricsError, match="fixed number of optimizer steps"):
        augmentation_uplift(data, data, data, seeds=(0,), classifier=ClassifierConfig(epochs=3, width=4, feature_dim=8, batch_size=8))


def test_evaluate_writes_a_report(tmp_path, digits):
    train, holdout, judge = digits
    torch.manual_seed(0)
    generator = Generator(ModelConfig(32, 1, 10, z_dim=16, g_width=8, d_width=8)).eval()
    report = evaluate(generator, train, holdout, judge, tmp_path, EvaluationConfig(n_samples=600, backbone="domain"))
    assert report.backbone == "domain" and report.n_compare == 600
    m = report.metrics
    # An untrained generator is far from real digits, the holdout is not.
    assert m["fid_domain"] > 5 * m["fid_domain_baseline"]
    assert m["label_accuracy"] < 0.5 < m["label_accuracy_baseline"]
    assert {"precision_domain", "recall_domain", "density_domain", "coverage_domain", "kid_domain", "is_domain"} <= m.keys()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["fid_domain"] == pytest.approx(m["fid_domain"])
    assert "fid_domain" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "samples.png").stat().st_size > 0 and (tmp_path / "nearest_pairs.png").stat().st_size > 0
    assert set(report.per_class_fid) <= set(train.class_names) and len(report.per_class_fid) >= 5
    # Every figure is a registered metric (or its baseline / std), and every registered one is there.
    assert set(default_metrics("domain")) <= set(m) and all(k.removesuffix("_baseline").removesuffix("_std") in default_metrics("domain") for k in m)

    # A list of names from the registry computes just those, to the same figures.
    chosen = evaluate(
        generator,
        train,
        holdout,
        judge,
        tmp_path / "chosen",
        EvaluationConfig(n_samples=600, backbone="domain", metrics=["fid", "coverage_domain", "label_accuracy"]),
    )
    assert chosen.metrics == {
        k: m[k] for k in ("fid_domain", "fid_domain_baseline", "coverage_domain", "coverage_domain_baseline", "label_accuracy", "label_accuracy_baseline")
    }
    # Only the work the chosen metrics need is done: no copy screen, no pairs figure without pixel memorization.
    assert {"pixel_distances", "per_class_fid", "judge", "fid_domain", "precision_domain"} <= report.timings.keys()
    assert "pixel_distances" not in chosen.timings and "per_class_fid" in chosen.timings and "nearest_pairs" not in chosen.files
    assert chosen.memorization == {} and set(chosen.label_accuracy_per_class) == set(report.label_accuracy_per_class)
    bare = evaluate(
        generator,
        train,
        holdout,
        judge,
        tmp_path / "bare",
        EvaluationConfig(n_samples=600, backbone="domain", metrics=["fid", "kid", "is_domain"], per_class_fid=False),
    )
    assert bare.per_class_fid == {} and bare.label_accuracy_per_class == {} and not {"judge", "pixel_distances", "per_class_fid"} & bare.timings.keys()
    assert bare.metrics["fid_domain"] == m["fid_domain"] and bare.metrics["kid_domain"] == m["kid_domain"]
    with pytest.raises(MetricsError, match="needs the inception backbone"):
        evaluate(generator, train, holdout, judge, tmp_path / "x", EvaluationConfig(n_samples=600, backbone="domain", metrics=["fid_inception"]))
    with pytest.raises(MetricsError, match="need the uplift study"):
        evaluate(generator, train, holdout, judge, tmp_path / "y", EvaluationConfig(n_samples=600, backbone="domain", metrics=["uplift_gain"]))


def test_metric_registry_names_directions_and_unknown_names():
    names = known_metrics()
    assert {"fid_domain", "fid_inception", "kid_domain", "coverage_inception", "label_accuracy", "memorization_fraction_pixels", "uplift_gain"} <= set(names)
    assert not metric_info("fid_domain").higher_is_better and metric_info("coverage_domain").higher_is_better
    assert metric_info("kid_inception").samples == "n_compare" and metric_info("label_accuracy").measured_on == "judge"
    assert resolve_metric("fid", "inception") == "fid_inception" and resolve_metric("recall_domain", "domain") == "recall_domain"
    with pytest.raises(MetricsError, match=r"unknown metric 'fid_pixels'; expected one of fid, kid .* fid_domain, fid_inception"):
        resolve_metric("fid_pixels", "domain")


@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 128, 128)])
def test_copy_screen_and_nearest_distances_are_exact_on_large_images(shape):
    """Squared norms of these images pass 2^24, where float32's matrix-multiply shortcut rounds."""
    from gan_core.export import CopyScreen

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, *shape), dtype=np.uint8)
    exact = train[:10].copy()
    one_pixel_off = train[10:20].copy()
    one_pixel_off[:, 0, 0, 0] ^= 1  # one pixel, one grey level
    unrelated = rng.integers(0, 256, (10, *shape), dtype=np.uint8)
    queries = np.concatenate([exact, one_pixel_off, unrelated])

    distances, nearest = nearest_distances(queries, train)
    assert (distances[:10] == 0).all() and (nearest[:10] == np.arange(10)).all()
    assert (distances[10:20] == 1).all() and (nearest[10:20] == np.arange(10, 20)).all()
    assert (distances[20:] > 1000).all()
    assert CopyScreen(train, threshold=1.5).count(queries) == {"checked": 30, "near_copies": 20, "exact_copies": 10}
