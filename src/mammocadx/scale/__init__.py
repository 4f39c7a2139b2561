"""Beyond one machine: the featurizer's stages and batch scoring on Ray (``pip install 'mammocadx[ray]'``).

- :mod:`mammocadx.scale.engines`: the engine registry (``local``, ``ray``) the CLI picks from.
- :mod:`mammocadx.scale.ray_engine`: :class:`~mammocadx.scale.ray_engine.RayEngine`, a
  :class:`~mammocadx.features.featurizer.FeatureEngine` that runs the Ray Data pipeline
  records -> decode + ROI tasks -> feature (or scoring) actors -> results on the driver.
- :mod:`mammocadx.scale.stages`: what runs on the Ray workers (nothing here imports Ray).
- :mod:`mammocadx.scale.parquet`: features and scores as Parquet keyed by sample id.

See ``docs/scale.md``.
"""
