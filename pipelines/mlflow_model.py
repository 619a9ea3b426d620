"""MLflow pyfunc model, logged as code (models-from-code): nothing of this class is pickled.

Input: a DataFrame with integer columns `label` and `seed` (a per-sample seed, as in exports).
Output: a DataFrame with `label`, `seed` and `image` (PNG bytes). The weights are the generator's
safetensors file and its JSON config, passed as the artifact directory `generator`."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd


class GanGeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        from gan_core.checkpoint import load_generator

        self.generator, self.meta = load_generator(Path(context.artifacts["generator"]) / "generator.safetensors")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from gan_core.export import encode_pngs
        from gan_core.sample import generate

        missing = {"label", "seed"} - set(model_input.columns)
        if missing:
            raise ValueError(f"model input: missing column(s) {sorted(missing)}; expected integer columns 'label' and 'seed'")
        labels = model_input["label"].to_numpy(dtype=np.int64)
        seeds = model_input["seed"].to_numpy(dtype=np.int64)
        images = generate(self.generator, labels, seeds=seeds)
        return pd.DataFrame({"label": labels, "seed": seeds, "image": encode_pngs(images)})


mlflow.models.set_model(GanGeneratorModel())
