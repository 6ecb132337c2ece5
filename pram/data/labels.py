"""Entity types shared by a source and a target corpus whose label sets differ (CoNLL has MISC, WikiAnn not).

Training and evaluation across such corpora use only the shared types: a tag of any other type is read as `O`
on both sides, so that no model is asked to predict a type the other side never marks.
"""

from __future__ import annotations


def entity_types(label_names: list[str]) -> list[str]:
    """Entity types of a BIO label list, in order: [O, B-PER, I-PER, B-ORG...] -> [PER, ORG...]."""
    return list(dict.fromkeys(name[2:] for name in label_names if name != "O"))


def shared_label_set(source_labels: list[str], target_labels: list[str], source_name: str = "source",
                     target_name: str = "target") -> tuple[list[str], str]:
    """The label names both corpora share (in the source's order), and one line that says what was dropped.

    The explanation is "" when the two label sets have the same types, e.g. for conll vs wikiann:
    "MISC is in conll but not wikiann: its tags are read as O in both".
    """
    target_types = set(entity_types(target_labels))
    keep = [t for t in entity_types(source_labels) if t in target_types]
    names = [name for name in source_labels if name == "O" or name[2:] in keep]
    dropped = [(t, source_name, target_name) for t in entity_types(source_labels) if t not in keep]
    dropped += [(t, target_name, source_name) for t in entity_types(target_labels) if t not in keep]
    explanation = "; ".join(f"{t} is in {has} but not {lacks}" for t, has, lacks in dropped)
    if explanation:
        its = "its tags are" if len(dropped) == 1 else "their tags are"
        explanation += f": {its} read as O in both"
    return names, explanation


def restrict_tags(names: list[str] | tuple[str, ...], keep_types: set[str] | list[str]) -> list[str]:
    """Tags with each entity whose type is not in keep_types made O (whole entities, so BIO stays valid)."""
    keep = set(keep_types)
    return [name if name == "O" or name[2:] in keep else "O" for name in names]
