"""mammocadx: computer-aided diagnosis (CADx) of breast lesions on mammograms.

The package mirrors the pipeline of Almaraz-Damian et al. (2021), one sub-package
per stage::

    io -> datasets -> preprocess -> features -> model -> explain / evaluate -> report

The command line (:mod:`mammocadx.cli`) and the web page (:mod:`mammocadx.web`)
are thin shells over these stages.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
