"""The bundled "text" and "ner" samples: small generated data sets for the transformers adapters.

``text`` is a text classification set (CSV, columns ``text,label``) of short sentences about the
weather, sports, products and travel. ``ner`` is a named-entity set in CoNLL (``token TAG``, BIO)
with PER, LOC and ORG entities. Both are made from templates and word lists with a seeded random
generator, so they are the same on every machine and nothing is downloaded.

They are meant to be learnt, not memorised: the templates share filler words, places and
sentiment words across labels, some text sentences name a thing of another label on purpose, and
a tenth of the names, places and organisations of ``ner`` appear only in the validation subset,
so a model has to use the context around an entity. A model starts near chance (0.3 accuracy,
F1 0 after 20 steps) and learns the text sample perfectly within about 60 steps; the held-out
names keep the entity F1 of bert-tiny near 0.92.
Writers are idempotent like :func:`trainfaas.adapters.shapes.write_shapes`: a marker file records the
parameters of a complete export, and an export is built beside ``dest`` and moved in at the end.
"""
from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from trainfaas.adapters.samples import export_once
from trainfaas.services.core.errors import DatasetError

VERSION = 1

_CITIES = ["Paris", "Lisbon", "Oslo", "Denver", "Cairo", "Lima", "Tokyo", "Madrid", "Dublin", "Boston"]
_MOODS = ["great", "awful", "nice", "terrible", "lovely", "strange", "perfect", "disappointing"]
_TIMES = ["today", "yesterday", "this morning", "tonight", "on Sunday", "all week", "last weekend"]

# Topic -> slot -> the words a sentence of that topic may use in the slot.
TEXT_VOCABULARY: dict[str, dict[str, list[str]]] = json.loads(
    resources.files(__package__).joinpath("text_vocabulary.json").read_text())

_TEXT_TEMPLATES = [
    "{thing} {verb} {time} .",
    "{thing} {verb} in {city} {time} and {extra} was {mood} .",
    "{time} {thing} {verb} , {extra} was {mood} .",
    "honestly {extra} was {mood} {time} because {thing} {verb} .",
    "in {city} {thing} {verb} ; people said {extra} was {mood} .",
    "{extra} was {mood} and {thing} {verb} {time} in {city} .",
    "{other} was {mood} {time} , but what matters is that {thing} {verb} .",
    "forget {other} ; {thing} {verb} in {city} and {extra} was {mood} .",
]


def _text_example(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(sorted(TEXT_VOCABULARY))
    words = {slot: rng.choice(choices) for slot, choices in TEXT_VOCABULARY[label].items()}
    # A word of another label, so that no single word gives the label away.
    other = rng.choice([name for name in sorted(TEXT_VOCABULARY) if name != label])
    words.update(city=rng.choice(_CITIES), mood=rng.choice(_MOODS), time=rng.choice(_TIMES),
                 other=rng.choice(TEXT_VOCABULARY[other]["extra"]))
    sentence = rng.choice(_TEXT_TEMPLATES).format(**words)
    return sentence[0].upper() + sentence[1:], label


_FIRST_NAMES = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Chen", "Sofia",
                "Omar", "Emma", "Ivan", "Priya", "Lucas", "Hana", "Diego", "Grace", "Yusuf", "Nora",
                "Tomas", "Amara", "Felix", "Ines", "Rahul", "Mei", "Oscar", "Leila", "Bruno", "Zara",
                "Hugo", "Anika", "Mateo", "Elif", "Samuel", "Yara", "Viktor", "Carmen", "Kofi", "Astrid"]
_LAST_NAMES = ["Silva", "Smith", "Khan", "Tanaka", "Petrova", "Garcia", "Haddad", "Murphy", "Wang", "Rossi",
               "Ali", "Brown", "Ivanov", "Patel", "Martin", "Sato", "Lopez", "Kim", "Demir", "Berg",
               "Novak", "Okafor", "Larsen", "Moreau", "Costa", "Nguyen", "Fischer", "Mendes", "Horvat", "Suzuki",
               "Walsh", "Jensen", "Romero", "Farah", "Kowalski", "Dubois", "Mensah", "Lindqvist", "Reyes", "Park"]
_PLACES = ["Paris", "New York", "Lisbon", "Buenos Aires", "Oslo", "Cape Town", "Tokyo", "Rio de Janeiro", "Cairo", "Lima",
           "Hong Kong", "Berlin", "San Diego", "Nairobi", "Mexico City", "Dublin", "Seoul", "Kuala Lumpur", "Quebec", "Perth",
           "Vienna", "Accra", "Bogota", "Helsinki", "Santiago", "Hanoi", "Krakow", "Marseille", "Porto", "Tunis",
           "Glasgow", "Montreal", "Osaka", "Lagos", "Valencia", "Zurich", "Manila", "Denver", "Tbilisi", "Salt Lake City"]
_ORGANISATION_NAMES = ["Acme", "Globex", "Initech", "Stark", "Umbrella", "Nordic", "Blue Harbor", "Apex", "Greenfield",
                       "Oceanic", "Delta", "Vertex", "Pioneer", "Helix", "Summit", "Orion", "Redwood", "Silverline",
                       "Northwind", "Crescent", "Ironclad", "Bluebird", "Meridian", "Falcon", "Evergreen"]
_ORGANISATION_KINDS = ["Corp", "Bank", "Labs", "Airlines", "Foods", "Media", "Motors", "Health", "Energy", "Systems",
                       "University", "Group", "Foundation", "Institute"]
_NER_TEMPLATES = [
    "{PER} flew to {LOC} on Monday .",
    "{PER} works for {ORG} in {LOC} .",
    "{ORG} opened a new office in {LOC} last year .",
    "Yesterday {PER} met {PER} at the {ORG} headquarters .",
    "According to {PER} , {ORG} will hire more staff .",
    "The mayor of {LOC} thanked {ORG} for the donation .",
    "{PER} was born in {LOC} and studied there .",
    "Shares of {ORG} fell after {PER} resigned .",
    "A spokesperson for {ORG} said the plant in {LOC} will close .",
    "{PER} and {PER} moved from {LOC} to {LOC} .",
    "Fans waited for hours to see {PER} in {LOC} .",
    "The report by {ORG} praised {LOC} for its parks .",
    "Police in {LOC} questioned {PER} on Friday .",
    "{ORG} and {ORG} agreed to merge , {PER} said .",
    "In {LOC} , {PER} signed a contract with {ORG} .",
    "Thousands of people in {LOC} watched the speech by {PER} .",
    "Last week {ORG} sued {ORG} over a patent .",
    "{PER} will lead {ORG} from next month .",
]


def _split_names(names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(names seen in training, names used in validation): a tenth appear only in validation."""
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    held_out = max(1, len(shuffled) // 10)
    return shuffled[held_out:], shuffled


def _entity(kind: str, rng: random.Random, pools: dict[str, list[str]]) -> list[str]:
    if kind == "PER":
        name = rng.choice(pools["first"]) if rng.random() < 0.3 else f"{rng.choice(pools['first'])} {rng.choice(pools['last'])}"
    elif kind == "ORG":
        name = f"{rng.choice(pools['ORG'])} {rng.choice(_ORGANISATION_KINDS)}"
    else:
        name = rng.choice(pools[kind])
    return name.split()


def _ner_sentence(rng: random.Random, pools: dict[str, list[str]]) -> list[tuple[str, str]]:
    tagged: list[tuple[str, str]] = []
    for word in rng.choice(_NER_TEMPLATES).split():
        if word in ("{PER}", "{LOC}", "{ORG}"):
            kind = word[1:-1]
            tokens = _entity(kind, rng, pools)
            tagged += [(token, f"{'B' if i == 0 else 'I'}-{kind}") for i, token in enumerate(tokens)]
        else:
            tagged.append((word, "O"))
    return tagged


def _write_text_subsets(root: Path, counts: dict[str, int], seed: int) -> None:
    for number, (subset, count) in enumerate(counts.items()):
        rng = random.Random(seed * 1009 + number)
        with (root / f"{subset}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(_text_example(rng) for _ in range(count))


def _write_ner_subsets(root: Path, counts: dict[str, int], seed: int) -> None:
    splits = {kind: _split_names(names, seed) for kind, names in
              (("first", _FIRST_NAMES), ("last", _LAST_NAMES), ("LOC", _PLACES), ("ORG", _ORGANISATION_NAMES))}
    for number, (subset, count) in enumerate(counts.items()):
        rng = random.Random(seed * 1009 + number)
        pools = {kind: split[0] if subset == "train" else split[1] for kind, split in splits.items()}
        sentences = ["".join(f"{token} {tag}\n" for token, tag in _ner_sentence(rng, pools)) for _ in range(count)]
        (root / f"{subset}.conll").write_text("\n".join(sentences), encoding="utf-8")


def _write_sample(dest: Path, name: str, files: tuple[str, ...], labels: list[str],
                  write: Callable[[Path, dict[str, int], int], None], train: int, validation: int, seed: int) -> dict[str, Any]:
    """Write ``files`` with ``write`` into ``dest`` unless a complete export with these parameters is there."""
    if train < 1 or validation < 1:
        raise DatasetError(f"the {name} sample needs at least one training and one validation example",
                           {"train_examples": "at least 1", "validation_examples": "at least 1"})
    parameters = {"sample": name, "version": VERSION, "train_examples": train, "validation_examples": validation, "seed": seed}

    def export(scratch: Path) -> dict[str, Any]:
        write(scratch, {"train": train, "validation": validation}, seed)
        return {"labels": labels, "train_examples": train, "validation_examples": validation}

    return export_once(dest, parameters, files, export)


def write_text(dest: Path, train_examples: int = 1200, validation_examples: int = 300, seed: int = 0) -> dict[str, Any]:
    """Write the text classification sample: ``dest/train.csv`` and ``dest/validation.csv`` with
    columns ``text,label`` and labels product, sports, travel and weather. Returns
    ``{"path", "labels", "train_examples", "validation_examples"}``; writes nothing when ``dest``
    already holds a complete export with the same parameters."""
    return _write_sample(dest, "text", ("train.csv", "validation.csv"), sorted(TEXT_VOCABULARY), _write_text_subsets,
                         train_examples, validation_examples, seed)


def write_ner(dest: Path, train_examples: int = 1000, validation_examples: int = 250, seed: int = 0) -> dict[str, Any]:
    """Write the named-entity sample: ``dest/train.conll`` and ``dest/validation.conll`` (one
    ``token TAG`` per line, BIO tags of LOC, ORG and PER, a blank line between sentences).
    ``*_examples`` count sentences. Returns ``{"path", "labels", "train_examples",
    "validation_examples"}``; writes nothing when ``dest`` already holds a complete export with the
    same parameters."""
    return _write_sample(dest, "ner", ("train.conll", "validation.conll"), ["LOC", "ORG", "PER"], _write_ner_subsets,
                         train_examples, validation_examples, seed)
