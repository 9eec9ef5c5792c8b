"""A transformers model folder the user already has, checked against a BERT architecture before
it becomes a pre-trained model (see ``_TransformersAdapter.import_weights``).

The folder holds ``config.json`` (a ``bert`` model), the weights as ``model.safetensors`` (read
by safetensors: no code can run) or ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``,
which refuses a pickle that would run code), and the tokenizer as ``tokenizer.json`` (a tokenizers
file: data, not code). Nothing is downloaded. The weights must fit the architecture's size built
with the folder's vocabulary and the head's classes; the first layer that does not is named.

The same reading takes back a folder the adapter saved (a downloaded archive's ``model/``, with its
``trainfaas-model.json``), and a Trainer checkpoint folder becomes a saved model by a copy of its
weights, config and tokenizer files (regular files only, no link followed; never its pickled
training arguments nor optimizer state).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainfaas.adapters import AdapterError, ConfigError, weights_import
from trainfaas.adapters.text_datasets import bio_tags
from trainfaas.services.core.files import atomic_write_text, copy_regular

MAX_CONFIG_BYTES = 1 << 20
MODEL_INFO = "trainfaas-model.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
FOLDER = "a transformers model folder: config.json, model.safetensors (or pytorch_model.bin) and tokenizer.json"


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not folder.is_dir() or not path.is_file() or path.is_symlink():
        raise ConfigError("a transformers model is a folder with config.json", {"weights": FOLDER})
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError("config.json is larger than 1 MiB", {"weights": FOLDER})
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"config.json is not JSON: {str(error)[:200]}", {"weights": FOLDER}) from None
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        raise ConfigError("the folder's config.json is not a BERT model's (model_type bert)", {"weights": f"{FOLDER}, of a BERT model"})
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or not 1 <= vocab <= 1_000_000:
        raise ConfigError("config.json's vocab_size is not a whole number from 1 to 1,000,000", {"weights": FOLDER})
    return config


def read_weights(folder: Path) -> dict[str, Any]:
    """The folder's tensors, less the position-id buffers older versions saved."""
    safe, pickled = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safe.is_file() and not safe.is_symlink():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(safe), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ConfigError(f"model.safetensors cannot be read: {str(error)[:200]}", {"weights": FOLDER}) from None
    elif pickled.is_file() and not pickled.is_symlink():
        state = weights_import.read_state_dict(pickled)
    else:
        raise ConfigError("the folder holds no model.safetensors or pytorch_model.bin", {"weights": FOLDER})
    return {key: value for key, value in state.items() if not key.endswith("embeddings.position_ids")}


def read_tokenizer(folder: Path, max_length: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    path = folder / "tokenizer.json"
    if not path.is_file() or path.is_symlink():
        raise ConfigError("the folder holds no tokenizer.json: a model needs the tokenizer it was trained with", {"weights": FOLDER})
    try:
        return PreTrainedTokenizerFast(tokenizer_file=str(path), unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)
    except Exception as error:  # noqa: BLE001 - any parse error of the file: refused, naming it
        raise ConfigError(f"tokenizer.json cannot be read: {str(error)[:200]}", {"weights": FOLDER}) from None


def head_names(config: dict[str, Any], classes: int, labels: list[str] | None, token_task: bool) -> tuple[list[str], list[str]]:
    """(the model's output names, the adapter's labels): for text classification they are the same;
    for token classification the outputs are the BIO tags of the labels, the entity types."""
    id2label = config.get("id2label") if isinstance(config.get("id2label"), dict) else {}
    given = [str(id2label.get(str(i), id2label.get(i, ""))) for i in range(classes)]
    if not token_task:
        names = weights_import.labels_for(classes, labels if labels is not None else (given if all(given) else None))
        return names, names
    types = labels if labels is not None else [tag[2:] for tag in given[1::2]] if all(given) else None
    if types is None or bio_tags(types) != (given if labels is None else bio_tags(types)) or len(bio_tags(types)) != classes:
        raise ConfigError(f"the weights' head predicts {classes} tags, which the entity types do not give in the order O, B-x, I-x, …",
                          {"labels": f"{(classes - 1) // 2} entity types whose O, B-, I- tags are the head's {classes} outputs in order"})
    return bio_tags(types), list(types)


def import_folder(adapter_cls: Any, bert_config: Any, architecture: str, source: Path, destination: Path,
                  labels: list[str] | None, max_length: int | None = None) -> list[str]:
    """Check the folder ``source`` against ``architecture`` (built by ``bert_config``) and save it
    into ``destination`` as the adapter saves a trained model; return the adapter's labels."""
    folder = Path(source)
    config = read_config(folder)
    state = read_weights(folder)
    vocab = int(config["vocab_size"])
    token_task = adapter_cls.task == "token-classification"

    def build(classes: int) -> Any:
        return adapter_cls.model_class()(bert_config(architecture, vocab, [f"c{i}" for i in range(classes)]))

    classes = weights_import.head_classes(build, state)
    outputs, names = head_names(config, classes, labels, token_task)
    model = adapter_cls.model_class()(bert_config(architecture, vocab, outputs))
    weights_import.check_fits(model, state)
    model.load_state_dict(state)
    adapter = adapter_cls(architecture, labels=names)
    adapter.max_length = max_length or adapter.max_length
    adapter.model, adapter.tokenizer = model.eval(), read_tokenizer(folder, adapter.max_length)
    adapter.save(destination)
    return names


def import_saved_folder(adapter_cls: Any, bert_config: Any, architecture: str, source: Path, destination: Path,
                        labels: list[str]) -> list[str]:
    """A folder the adapter's ``save`` wrote: its ``trainfaas-model.json`` must name ``architecture`` and
    ``labels``; the rest is imported as :func:`import_folder` imports a model folder, its max_length kept."""
    info_path = Path(source) / MODEL_INFO
    try:
        if info_path.is_symlink() or info_path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{MODEL_INFO} is a link or larger than 1 MiB")
        info = json.loads(info_path.read_text())
        max_length = int(info["max_length"])
        if not 8 <= max_length <= 512:
            raise ValueError("max_length out of 8..512")
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"the archive holds no {MODEL_INFO} of a BERT model", {"archive": f"model/{MODEL_INFO} as the adapter saves it"}) from None
    adapter_cls.check_saved(architecture, labels, info.get("architecture"), info.get("labels"))
    return import_folder(adapter_cls, bert_config, architecture, Path(source), Path(destination), labels, max_length)  # type: ignore[no-any-return]


def folder_from_checkpoint(adapter_cls: Any, checkpoint: Path, destination: Path, architecture: str, labels: list[str],
                           configuration: dict[str, Any]) -> None:
    """Write into ``destination`` the model of the Trainer checkpoint folder ``checkpoint``, as the adapter's
    ``save`` writes one: its config, weights and tokenizer files copied (regular files only, no link
    followed), and ``trainfaas-model.json`` with the training's max_length. AdapterError naming
    ``checkpoint_id`` when one the model needs is missing."""
    copied = [name for name in ("config.json", *WEIGHT_FILES, *TOKENIZER_FILES) if copy_regular(checkpoint / name, destination / name)]
    needed = {"config.json", "tokenizer.json"}
    if not needed <= set(copied) or not set(WEIGHT_FILES) & set(copied):
        raise AdapterError(f"checkpoint {checkpoint.name} lacks config.json, model.safetensors or tokenizer.json",
                           {"checkpoint_id": "a Trainer checkpoint folder with config.json, model.safetensors and tokenizer.json"})
    max_length = int(adapter_cls.validate_configuration(configuration)["max_length"])
    info = {"architecture": architecture, "task": adapter_cls.task, "labels": list(labels), "max_length": max_length}
    atomic_write_text(destination / MODEL_INFO, json.dumps(info, indent=2))
