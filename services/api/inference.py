"""Evaluations and predictions of trained models: executions of ``evaluate_model`` and
``predict_model`` on the model's service (see trainfaas.services.control.inference)."""
from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint
from pydantic import Field, model_validator

from trainfaas.services.api import redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ExecutionOut, Strict
from trainfaas.services.api.views import execution_view
from trainfaas.services.control import inference
from trainfaas.services.control.executions import ExecutionSettings
from trainfaas.services.control.models import get_model
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.inputs import (
    DEFAULT_TOP_K,
    MAX_INLINE_IMAGE_CHARS,
    MAX_INPUTS,
    MAX_TEXT_CHARS,
    MAX_TOP_K,
)

bp = Blueprint("inference", __name__, url_prefix="/api/v1/models")


class EvaluateRequest(Strict):
    dataset: str = Field(min_length=1, max_length=4096,
                         description="Data set directory inside a data root, or its name relative to the first data root; in the"
                                     " format the model trained on, labelled among the model's labels.")
    subset: Literal["validation", "train"] = Field("validation", description="The subset of the data set to score.")
    execution: ExecutionSettings | None = None


class PredictInput(Strict):
    """One input: exactly one of ``file``, ``image`` or ``text``."""

    file: str | None = Field(None, min_length=1, max_length=4096,
                             description="A file's path relative to the first data root, inside the data roots (an image, or UTF-8"
                                         " text for text models).")
    image: str | None = Field(None, min_length=1, max_length=MAX_INLINE_IMAGE_CHARS,
                              description="A base64-encoded image (PNG, JPEG, ...), for image models.")
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS, description="A text, for text models.")

    @model_validator(mode="after")
    def _one(self) -> PredictInput:
        if sum(value is not None for value in (self.file, self.image, self.text)) != 1:
            raise ValueError("give exactly one of file, image or text")
        return self


class PredictRequest(Strict):
    inputs: list[PredictInput] = Field(min_length=1, max_length=MAX_INPUTS, description=f"From 1 to {MAX_INPUTS} inputs.")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="Classification: how many labels to list with their scores.")
    execution: ExecutionSettings | None = None


@endpoint(bp, "POST", "/<model_id>/evaluate", body=EvaluateRequest, response=ExecutionOut, status=202, access="write",
          errors=(409, 429), links={"id": "/executions/{execution_id}"})
def evaluate(model_id: str, body: EvaluateRequest, principal: Principal) -> dict[str, Any]:
    """Enqueue an evaluation of a trained model on a data set; its output holds the task's metrics. 409 unless
    the model is trained (naming its status); the model's status does not change."""
    model = get_model(model_id, principal.reach)
    return execution_view(inference.submit_evaluation(settings(), redis_connection(), model, body.dataset, body.subset,
                                                      body.execution))


@endpoint(bp, "POST", "/<model_id>/predict", body=PredictRequest, response=ExecutionOut, status=202, access="write",
          errors=(409, 429), links={"id": "/executions/{execution_id}"})
def predict(model_id: str, body: PredictRequest, principal: Principal) -> dict[str, Any]:
    """Enqueue a prediction of a trained model on files inside the data roots or inline images or texts; its
    output holds one prediction per input. 409 unless the model is trained; its status does not change."""
    model = get_model(model_id, principal.reach)
    inputs = [item.model_dump(exclude_none=True) for item in body.inputs]
    return execution_view(inference.submit_prediction(settings(), redis_connection(), model, inputs, body.top_k, body.execution))
