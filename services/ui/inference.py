"""Evaluating and predicting from a model's page: each form queues an execution on the model's
service and opens its run page, where the output (metrics, predictions) is shown."""
from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for

from trainfaas.services.api import inference as api_inference
from trainfaas.services.ui.fleet import model_page
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import bp, failure_fields, page

INPUT_KINDS = ("file", "text")


@bp.post("/models/<model_id>/evaluate")
@page("write", changes=True)
def model_evaluate(session: Session, model_id: str) -> Any:
    form = {"dataset": request.form.get("dataset", "").strip(), "subset": request.form.get("subset", "validation"), "action": "evaluate"}
    try:
        body = api_inference.EvaluateRequest.model_validate({"dataset": form["dataset"], "subset": form["subset"]})
        queued = api_inference.evaluate(model_id=model_id, body=body, principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return model_page(session, model_id, form, message, fields, getattr(exc, "http_status", 422))
    return redirect(url_for("ui.execution", execution_id=queued["id"]))


def predict_inputs(kind: str, text: str) -> list[dict[str, str]]:
    """The inputs the form lists, one a line: file paths in the data roots, or texts. Blank lines are left out."""
    key = kind if kind in INPUT_KINDS else "file"
    return [{key: line.strip()} for line in text.splitlines() if line.strip()]


@bp.post("/models/<model_id>/predict")
@page("write", changes=True)
def model_predict(session: Session, model_id: str) -> Any:
    form = {key: request.form.get(key, "") for key in ("kind", "inputs", "top_k")} | {"action": "predict"}
    try:
        inputs = predict_inputs(form["kind"], form["inputs"])
        body = api_inference.PredictRequest.model_validate({"inputs": inputs, **({"top_k": form["top_k"]} if form["top_k"].strip() else {})})
        queued = api_inference.predict(model_id=model_id, body=body, principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return model_page(session, model_id, form, message, fields, getattr(exc, "http_status", 422))
    return redirect(url_for("ui.execution", execution_id=queued["id"]))
