"""Text data sets: the layouts the transformers adapters read, checked with the standard library only.

Text classification reads a directory with a training and a validation subset, as CSV with a
header row naming the columns ``text`` and ``label`` or as JSON lines of
``{"text": ..., "label": ...}``::

    <data set>/train.csv        <data set>/validation.csv
    <data set>/train.jsonl      <data set>/validation.jsonl

Token classification reads CoNLL files: one ``token TAG`` per line (the tag is the last
whitespace-separated column, so extra middle columns are allowed), BIO tags (``O``,
``B-<type>``, ``I-<type>``), a blank line between sentences, and ``-DOCSTART-`` lines ignored::

    <data set>/train.conll      <data set>/validation.conll      (or .txt)

In both, validation labels must be among the training ones, because a model cannot be scored on
a label it was never trained on. The files must lie inside the data set's folder (a symlink out of
it is refused, see :mod:`trainfaas.adapters.confine`), and an error names a file and a line number,
never the line's text. The ``labels`` option trains on a subset: text examples of other
labels are dropped, and entity types not chosen are tagged ``O``.

Nothing here imports torch or transformers, so the API can check a data set cheaply.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from trainfaas.adapters.confine import confined, in_time, read_text, shown
from trainfaas.services.core.errors import DatasetError

SUBSETS: tuple[str, ...] = ("train", "validation")
TEXT_LAYOUT = ("<data set>/train.csv and <data set>/validation.csv with columns text,label,"
               " or train.jsonl and validation.jsonl with {\"text\": ..., \"label\": ...} per line")
CONLL_LAYOUT = ("<data set>/train.conll and <data set>/validation.conll (or .txt): one 'token TAG' per line,"
                " BIO tags (O, B-<type>, I-<type>), a blank line between sentences")
CONLL_SUFFIXES: tuple[str, ...] = (".conll", ".txt")

TextExample = tuple[str, str]
"""(text, label)."""
Sentence = tuple[list[str], list[str]]
"""(tokens, BIO tags), of equal length."""


def _invalid(path: Path, problem: str, layout: str) -> DatasetError:
    return DatasetError(f"data set {path}: {problem}; expected {layout}", {"dataset": problem})


def _subset_file(path: Path, subset: str, suffixes: tuple[str, ...], layout: str) -> Path:
    """The one file of ``subset`` with one of ``suffixes``; DatasetError when there is none or it leads outside ``path``."""
    if not path.is_dir():
        raise _invalid(path, "the directory does not exist", layout)
    for suffix in suffixes:
        candidate = confined(path, path / f"{subset}{suffix}")
        if candidate.is_file():
            return candidate
    raise _invalid(path, f"no {' or '.join(subset + s for s in suffixes)}", layout)


def _read_csv(file: Path) -> list[TextExample]:
    with io.StringIO(read_text(file.parent, file), newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"text", "label"} <= set(reader.fieldnames or []):
            raise _invalid(file.parent, f"{file.name} line 1 must be a header row with columns text and label", TEXT_LAYOUT)
        examples = []
        for row in reader:
            in_time(file.parent)
            examples.append((row["text"] or "", (row["label"] or "").strip()))
        return examples


def _read_jsonl(file: Path) -> list[TextExample]:
    examples = []
    for number, line in enumerate(read_text(file.parent, file).splitlines(), start=1):
        in_time(file.parent)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise _invalid(file.parent, f"{file.name} line {number} is not JSON", TEXT_LAYOUT) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or record.get("label") is None:
            raise _invalid(file.parent, f"{file.name} line {number} needs a string 'text' and a 'label'", TEXT_LAYOUT)
        examples.append((record["text"], str(record["label"]).strip()))
    return examples


def _read_text_subset(path: Path, subset: str) -> list[TextExample]:
    file = _subset_file(path, subset, (".csv", ".jsonl"), TEXT_LAYOUT)
    try:
        examples = _read_csv(file) if file.suffix == ".csv" else _read_jsonl(file)
    except UnicodeDecodeError:
        raise _invalid(path, f"{file.name} is not UTF-8 text", TEXT_LAYOUT) from None
    except csv.Error as error:  # csv's messages are fixed sentences, never the file's text
        raise _invalid(path, f"{file.name} is not CSV ({error})", TEXT_LAYOUT) from None
    unlabelled = sum(1 for _, label in examples if not label)
    if unlabelled:
        raise _invalid(path, f"{file.name} has {unlabelled} examples without a label", TEXT_LAYOUT)
    if not examples:
        raise _invalid(path, f"{file.name} has no examples", TEXT_LAYOUT)
    return examples


def _choose(all_labels: list[str], chosen: list[str] | None) -> list[str]:
    """The labels to train on: ``chosen`` (in its order) when given, else all; unknown ones refused."""
    if chosen is None:
        return all_labels
    unknown = [label for label in chosen if label not in all_labels]
    if unknown or not chosen:
        raise DatasetError(
            f"labels {shown(unknown)} are not in the data set" if unknown else "the labels subset is empty",
            {"configuration.labels": f"a non-empty subset of: {shown(all_labels)}"},
        )
    return list(dict.fromkeys(chosen))


def read_text_dataset(path: Path, labels: list[str] | None = None) -> tuple[list[str], dict[str, list[TextExample]]]:
    """Read a text classification data set; return its sorted labels (or the chosen subset) and the
    examples of each subset with those labels. Raises DatasetError naming the file and the layout."""
    path = Path(path).resolve()
    subsets = {subset: _read_text_subset(path, subset) for subset in SUBSETS}
    all_labels = sorted({label for _, label in subsets["train"]})
    unknown = sorted({label for _, label in subsets["validation"]} - set(all_labels))
    if unknown:
        raise _invalid(path, f"validation has labels that train lacks: {shown(unknown)}", TEXT_LAYOUT)
    chosen = _choose(all_labels, labels)
    kept = {subset: [(text, label) for text, label in examples if label in chosen] for subset, examples in subsets.items()}
    if not kept["validation"]:
        raise _invalid(path, "validation has no example of the chosen labels", TEXT_LAYOUT)
    return chosen, kept


def entity_type(tag: str) -> str | None:
    """``PER`` for ``B-PER`` or ``I-PER``; None for ``O``."""
    return None if tag == "O" else tag[2:]


def _read_conll_file(file: Path) -> list[Sentence]:
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(read_text(file.parent, file).splitlines(), start=1):
        in_time(file.parent)
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        tag = columns[-1]
        if len(columns) < 2 or not (tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)):
            raise _invalid(file.parent, f"{file.name} line {number} is not 'token TAG' with a BIO tag", CONLL_LAYOUT)
        tokens.append(columns[0])
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def _keep_types(sentence: Sentence, types: set[str]) -> Sentence:
    tokens, tags = sentence
    return tokens, [tag if entity_type(tag) in types else "O" for tag in tags]


def read_conll_dataset(path: Path, labels: list[str] | None = None) -> tuple[list[str], dict[str, list[Sentence]]]:
    """Read a CoNLL token classification data set; return its sorted entity types (or the chosen
    subset) and the sentences of each subset with unchosen types tagged ``O``. Raises DatasetError
    naming the file and the layout."""
    path = Path(path).resolve()
    subsets: dict[str, list[Sentence]] = {}
    for subset in SUBSETS:
        file = _subset_file(path, subset, CONLL_SUFFIXES, CONLL_LAYOUT)
        try:
            subsets[subset] = _read_conll_file(file)
        except UnicodeDecodeError:
            raise _invalid(path, f"{file.name} is not UTF-8 text", CONLL_LAYOUT) from None
        if not subsets[subset]:
            raise _invalid(path, f"{file.name} has no sentences", CONLL_LAYOUT)
    types_of = {subset: {entity_type(t) for _, tags in sentences for t in tags} - {None} for subset, sentences in subsets.items()}
    all_types = sorted(t for t in types_of["train"] if t)
    if not all_types:
        raise _invalid(path, "train has no entity tags (only O)", CONLL_LAYOUT)
    unknown = sorted(t for t in types_of["validation"] - types_of["train"] if t)
    if unknown:
        raise _invalid(path, f"validation has entity types that train lacks: {shown(unknown)}", CONLL_LAYOUT)
    chosen = _choose(all_types, labels)
    return chosen, {subset: [_keep_types(s, set(chosen)) for s in sentences] for subset, sentences in subsets.items()}


def bio_tags(types: list[str]) -> list[str]:
    """The tag set a token classifier predicts for ``types``: O, then B- and I- of each type."""
    return ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in ("B", "I")]
