"""googlenet and inception_v3 train with their auxiliary classifiers, as their reference
configurations do, and the catalog counts those configurations' parameters."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from torchvision.models import GoogLeNetOutputs, InceptionOutputs

from tests.adapter_support import events, first_images
from trainfaas.adapters import NullContext
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters.datasets import write_digits
from trainfaas.adapters.vision_training import MODEL_FILE


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    digits = Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])
    return first_images(digits, tmp_path_factory.mktemp("small") / "digits")


@pytest.mark.parametrize(("architecture", "parameters"), [("googlenet", 13_004_888), ("inception_v3", 27_161_264)])
def test_the_catalog_counts_the_reference_configuration_with_its_auxiliary_classifiers(architecture: str, parameters: int) -> None:
    with init_empty_weights(include_buffers=False):
        model = tc.TorchvisionClassification.reference_model(architecture)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == parameters


def test_the_auxiliary_losses_are_added_with_the_reference_weights() -> None:
    torch.manual_seed(0)
    targets = torch.tensor([0, 2, 1])
    main, aux2, aux1 = (torch.randn(3, 3) for _ in range(3))
    run = SimpleNamespace(architecture="googlenet", loss_function=F.cross_entropy)
    loss, hits = tc.ClassificationTraining.loss(run, GoogLeNetOutputs(main, aux2, aux1), targets)  # type: ignore[arg-type]
    expected = F.cross_entropy(main, targets) + 0.3 * (F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))
    assert loss.item() == pytest.approx(expected.item())
    assert hits.item() == (main.argmax(dim=1) == targets).sum().item()
    run.architecture = "inception_v3"
    loss, _ = tc.ClassificationTraining.loss(run, InceptionOutputs(main, aux1), targets)  # type: ignore[arg-type]
    assert loss.item() == pytest.approx((F.cross_entropy(main, targets) + 0.4 * F.cross_entropy(aux1, targets)).item())
    loss, _ = tc.ClassificationTraining.loss(run, InceptionOutputs(main, None), targets)  # type: ignore[arg-type]
    assert loss.item() == pytest.approx(F.cross_entropy(main, targets).item())


def test_googlenet_trains_saves_and_predicts_with_its_auxiliary_classifiers(small_digits: Path, tmp_path: Path,
                                                                             no_network: list[str]) -> None:
    context = NullContext()
    adapter = tc.TorchvisionClassification("googlenet", configuration={"epochs": 1, "batch_size": 16, "input_size": 32,
                                                                       "warmup_steps": 0}, context=context)
    metrics = adapter.train(small_digits, tmp_path / "out", **adapter.configuration)
    assert metrics["steps"] == 5.0
    assert any("auxiliary classifiers trained too (each loss weighted 0.3)" in line for (line,) in events(context, "log"))
    adapter.save(tmp_path / "model")
    saved = torch.load(tmp_path / "model" / MODEL_FILE, weights_only=True)
    assert tc.saved_with_aux_heads(saved["model"]) and any(key.startswith("aux2.") for key in saved["model"])
    loaded = tc.TorchvisionClassification("googlenet")
    loaded.load(tmp_path / "model")
    image = torch.zeros(8, 8, dtype=torch.uint8).numpy()
    assert loaded.predict([image]) == adapter.predict([image])


def test_inception_v3_leaves_its_auxiliary_classifier_out_below_its_reference_size_and_says_why() -> None:
    small = tc.build_model("inception_v3", 3, 75)
    assert small.aux_logits is False and small.AuxLogits is None
    assert tc.has_aux_heads("inception_v3", (299, 299)) and not tc.has_aux_heads("inception_v3", (299, 298))
    note = tc._aux_note("inception_v3", small, (75, 75), None)
    assert note == "auxiliary classifiers left out: inception_v3's needs crops of at least 299 pixels a side, these are 75x75"


def test_a_checkpoint_written_without_auxiliary_classifiers_resumes_without_them(tmp_path: Path) -> None:
    without = tc.build_model("googlenet", 3, 32, aux=False)
    with_aux = tc.build_model("googlenet", 3, 32)
    torch.save({"model": without.state_dict()}, tmp_path / "old.pt")
    torch.save({"model": with_aux.state_dict()}, tmp_path / "new.pt")
    assert tc._resumed_aux("googlenet", tmp_path / "old.pt") is False
    assert tc._resumed_aux("googlenet", tmp_path / "new.pt") is True
    assert tc._resumed_aux("googlenet", tmp_path / "missing.pt") is None
    assert tc._resumed_aux("resnet18", tmp_path / "old.pt") is None
    assert "written without them" in tc._aux_note("googlenet", without, (32, 32), False)
