"""What one model-server process is serving right now; shared by the app, its middleware
and the loader (`lifecycle.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_server.errors import NotReady
from model_server.loaded_model import LoadedModel
from model_server.metrics import ServingMetrics
from model_server.scoring import Scorer
from model_server.settings import ModelServerSettings
from model_server.shadow import ShadowMirror


@dataclass
class ServingState:
    """The settings, the loaded model once ready, and whether this color is live."""

    settings: ModelServerSettings
    metrics: ServingMetrics
    model: LoadedModel | None = None
    scorer: Scorer | None = None
    load_error: str | None = None
    live: bool = True
    mirror: ShadowMirror = field(default_factory=lambda: ShadowMirror(token=None))

    def answered(
        self, endpoint: str, content_type: str | None, body: bytes, predictions: Any
    ) -> None:
        """After every answered scoring request: count its classes or bucket its values,
        offer it to the shadow."""
        self.metrics.observe_classes(predictions)
        self.metrics.observe_values(predictions)
        if self.mirror.active and isinstance(predictions, list):
            self.mirror.offer(endpoint, content_type or "", body, predictions)

    def require_model(self) -> LoadedModel:
        if self.model is None:
            raise NotReady(self.load_error or "model is still loading")
        return self.model

    def require_scorer(self) -> Scorer:
        if self.scorer is None:
            raise NotReady(self.load_error or "model is still loading")
        return self.scorer
