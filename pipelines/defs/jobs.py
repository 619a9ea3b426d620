"""The nightly job: every asset of the graph and its checks, for one spec's partition."""

import dagster as dg

from .assets.common import GROUP

JOB_NAME = "ganpipe_nightly"

ganpipe_nightly = dg.define_asset_job(
    JOB_NAME, selection=dg.AssetSelection.groups(GROUP), description="ingest, train, evaluate, promote, export, measure the uplift, recommend"
)
