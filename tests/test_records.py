"""Typed hand-offs between assets: each asset's record, stored per run, read by the steps of the run
that produced it; figures and verdicts taken once, at full precision; promotion as a pure function."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from pipelines.defs.assets.promote import decide_promotion
from pipelines.defs.assets.report import uplift_verdict
from pipelines.definitions import IN_PROCESS_RUN_CONFIG, JOB_NAME, build_definitions
from pipelines.partitions import register_specs
from pipelines.records import Uplift, from_json, to_json
from pipelines.specs import load_spec
from pipelines.tiny import write_tiny_spec

UP_TO_EVALUATION = [dg.AssetKey(name) for name in ("real_images", "judge_classifier", "gan_model", "gan_evaluation")]


def nightly_job():
    """The code location's job, as Dagster rebuilds it for a re-execution (from the environment)."""
    return build_definitions().resolve_job_def(JOB_NAME)


def test_a_reexecuted_step_reads_the_inputs_of_its_own_run(ganpipe_env):
    """Run 1 trains version 1; run 2 trains version 2; then run 1's evaluation step alone is
    executed again. It evaluates version 1, the model of the run it belongs to, not the newest
    materialization of gan_model (what a look-up of the latest materialization would have read)."""
    write_tiny_spec(ganpipe_env["specs"])
    write_tiny_spec(ganpipe_env["specs"], name="other")  # more than one partition: a check's input must still be this spec's
    job = dg.reconstructable(nightly_job)
    options = {"run_config": IN_PROCESS_RUN_CONFIG, "tags": {"dagster/partition": "tiny"}}
    with dg.DagsterInstance.get() as instance:
        register_specs(instance, ganpipe_env["specs"])
        first = dg.execute_job(job, instance, asset_selection=UP_TO_EVALUATION, **options)
        second = dg.execute_job(job, instance, asset_selection=UP_TO_EVALUATION, **options)
        assert first.success and second.success

        def evaluated(result) -> str:
            (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "gan_evaluation"]
            return event.materialization.metadata["model_version"].value

        assert (evaluated(first), evaluated(second)) == ("1", "2")
        assert [(e.check_name, e.passed) for e in first.get_asset_check_evaluations()] == [("quality_gate", True)]
        again = dg.execute_job(
            job, instance, reexecution_options=dg.ReexecutionOptions(parent_run_id=first.run_id, step_selection=["gan_evaluation"]), **options
        )
        assert again.success and evaluated(again) == "1"
        # A run that does not produce gan_model reads the partition's latest one instead.
        alone = dg.execute_job(job, instance, asset_selection=[dg.AssetKey("gan_evaluation")], **options)
        assert alone.success and evaluated(alone) == "2"
    records = sorted(p.stem for p in (ganpipe_env["home"] / "records" / "gan_model" / "tiny").glob("*.json"))
    assert records == sorted([first.run_id, second.run_id])


def test_an_edited_spec_is_not_mixed_into_a_snapshot_made_under_the_old_one(ganpipe_env, materialize_tiny):
    spec_path = write_tiny_spec(ganpipe_env["specs"])
    instance = dg.DagsterInstance.local_temp(str(ganpipe_env["dagster_home"]))
    assert materialize_tiny(ganpipe_env, selection=("real_images",), instance=instance).success
    spec_path.write_text(spec_path.read_text().replace("holdout_fraction: 0.2", "holdout_fraction: 0.3"))
    result = materialize_tiny(ganpipe_env, selection=("judge_classifier",), instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "spec 'tiny' changed since real_images made the snapshot" in failure.step_failure_data.error.message


def test_promotion_is_decided_by_a_pure_function():
    assert decide_promotion("1", 3.0, "fid_domain", False, None, None, "") == (True, "no champion yet")
    assert decide_promotion("2", 3.0, "fid_domain", False, "2", 3.0, "same yardstick") == (False, "version 2 is already the champion")
    promote, why = decide_promotion("3", 2.5, "fid_domain", False, "1", 3.0, "same yardstick")
    assert promote and why == "v3 fid_domain=2.50000 beats champion v1 fid_domain=3.00000 (same yardstick)"
    assert decide_promotion("3", 3.0, "fid_domain", False, "1", 3.0, "same yardstick")[0] is False  # an equal figure does not beat it
    assert decide_promotion("3", 0.9, "label_accuracy", True, "1", 0.8, "same yardstick")[0] is True  # higher is better
    assert decide_promotion("3", 0.9, "label_accuracy", True, "1", None, "champion could not be re-evaluated") == (
        False,
        "not promoted: champion could not be re-evaluated",
    )


@pytest.mark.parametrize("offset", [4e-7, -4e-7])
def test_the_gate_and_the_manifest_agree_within_a_millionth_of_the_threshold(tmp_path, offset):
    """A gain 4e-7 above (or below) gates.min_uplift: rounded to 5 places as metadata shows it, the
    two would decide alike on both sides and one of them wrongly; the record keeps the full value
    and the verdict taken on it, which the manifest's `utility` and the gate both carry."""
    write_tiny_spec(tmp_path, gates="{min_uplift: 0.0123456}")
    spec = load_spec(tmp_path / "tiny.yaml")
    threshold = 0.0123456
    figures = {"uplift_gain": threshold + offset, "uplift_gain_ci_low": 0.001, "uplift_recommended": 0.9, "uplift_baseline_accuracy": 0.88}
    passed, verdict = uplift_verdict(spec, figures, SUMMARY)
    assert passed is (offset > 0)
    rounded = uplift_verdict(spec, {key: round(value, 5) for key, value in figures.items()}, SUMMARY)[0]
    assert rounded is True  # re-deciding on the rounded metadata would have recommended both
    record = Uplift(model_version="1", export_path="x", figures=figures, passed=passed, verdict=verdict, min_uplift=threshold, seeds=2, classifier_steps=20)
    again = from_json(to_json(record), "record.json")
    assert again == record and again.figures["uplift_gain"] - threshold == pytest.approx(offset, abs=1e-12)


SUMMARY = {"recipe": "real + synthetic, 0.5 of each batch", "baseline": "real only"}


def test_a_gain_the_holdout_cannot_show_gets_no_verdict_either_way(tmp_path):
    """+2 points on 40 holdout images, with an interval reaching below 0: not "not recommended"
    (nothing shows the gain absent) and not recommended (nothing shows it real)."""
    write_tiny_spec(tmp_path)
    spec = load_spec(tmp_path / "tiny.yaml")
    figures = {
        "uplift_gain": 0.02,
        "uplift_gain_ci_low": -0.04,
        "uplift_recommended": 0.9,
        "uplift_baseline_accuracy": 0.88,
        "uplift_real_only": 0.85,
        "uplift_gain_over_real": 0.05,
        "uplift_holdout_images": 40.0,
        "uplift_min_detectable_gain": 0.06,
    }
    against_ssl = {**SUMMARY, "baseline": "ssl (pool under the teacher's hard labels)"}
    passed, verdict = uplift_verdict(spec, figures, against_ssl)
    measured = "real + synthetic, 0.5 of each batch (0.9000) against ssl (pool under the teacher's hard labels) (0.8800): gain +0.0200"
    assert passed is False and verdict.startswith(f"cannot be shown with 40 holdout images: {measured}")
    assert "over real only (0.8500) +0.0500" in verdict and "the smallest gain this holdout and these seeds can show is about +0.0600" in verdict
    assert uplift_verdict(spec, {**figures, "uplift_gain": -0.01}, SUMMARY)[1].startswith(
        "not recommended: real + synthetic, 0.5 of each batch (0.9000) against real only"
    )


def test_a_file_that_is_no_record_is_named(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"record": "Pickle", "path": "/"}))
    with pytest.raises(ValueError, match=r"x\.json: not a ganpipe record \(record type 'Pickle'"):
        from_json(path.read_text(), str(path))
