"""What one model-server process is serving right now; shared by the app, its middleware
and the loader (`lifecycle.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from model_server.errors import NotReady
from model_server.metrics import ServingMetrics
from model_server.predictor import LoadedModel
from model_server.scoring import Scorer
from model_server.settings import ModelServerSettings


@dataclass
class ServingState:
    """The settings, the loaded model once ready, and whether this color is live."""

    settings: ModelServerSettings
    metrics: ServingMetrics
    model: LoadedModel | None = None
    scorer: Scorer | None = None
    load_error: str | None = None
    live: bool = True

    def require_model(self) -> LoadedModel:
        if self.model is None:
            raise NotReady(self.load_error or "model is still loading")
        return self.model

    def require_scorer(self) -> Scorer:
        if self.scorer is None:
            raise NotReady(self.load_error or "model is still loading")
        return self.scorer
