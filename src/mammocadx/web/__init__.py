"""The local reader's web page: :func:`create_app` builds it, ``mammocadx serve`` runs it."""
from mammocadx.web.app import create_app
from mammocadx.web.config import WebConfig
from mammocadx.web.predictor import CADxPredictor, Explanation, Predictor

__all__ = ["CADxPredictor", "Explanation", "Predictor", "WebConfig", "create_app"]
