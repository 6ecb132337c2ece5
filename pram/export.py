"""`pram export CHECKPOINT OUT`: a trained checkpoint as a HuggingFace token-classification folder.

The folder stands alone (every weight of the encoder, the frozen layers included; the tokenizer; id2label and
label2id in config.json) and loads offline with `AutoModelForTokenClassification.from_pretrained(OUT)` and
`pipeline("token-classification", model=OUT, aggregation_strategy="first")`. pram's model is exactly the
architecture those classes build: the encoder, dropout and one linear layer on the last layer (Eq. 1-2). The
projection head of `--proto-space projection` serves only the training loss and is not exported. One difference
remains: pram cuts a sentence at the run's `max_length` pieces (the words past it tagged O), where the pipeline
reads up to the encoder's own limit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from pram.config import TrainConfig
from pram.errors import UserError, at
from pram.files import os_errors_of_safetensors, publish_folder


def to_huggingface(model, label_names: list[str]):
    """The AutoModelForTokenClassification with pram's weights: `encoder.*` becomes the base model's, the
    classifier stays the classifier."""
    import copy

    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(model.encoder.config)
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    hf = AutoModelForTokenClassification.from_config(config)
    state = {f"{hf.base_model_prefix}.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in model.classifier.state_dict().items()})
    hf.load_state_dict(state, strict=True)  # every weight found its place, and no other was left random
    return hf.eval()


def model_card(info: dict, run_metrics: dict | None, command: str, scores: str | None = None) -> str:
    """README.md of the exported folder: languages, settings, the test F1 it was chosen with, the commands."""
    from pram.settings import train_command

    config = TrainConfig.from_dict(info["config"])
    selection = info.get("selection", config.selection)
    encoder = (info.get("encoder") or {}).get("name") or config.encoder
    lines = [f"# pram: NER for {config.target}, trained without {config.target} labels", "",
             f"A PRAM model (ACL 2023) exported by `pram`: encoder `{encoder}`"
             f" with a linear token classifier, trained on labelled {', '.join(config.sources)} "
             f"({config.dataset}) and unlabelled {config.target} text; the checkpoint was chosen on {selection} "
             f"F1 at step {info.get('step')}. Labels: {', '.join(info['label_names'])}.", ""]
    if scores:
        lines += [f"Test F1: {scores}", ""]
    elif run_metrics and selection in run_metrics.get("selected_by", {}):
        test = run_metrics["selected_by"][selection]["test"]
        cells = ", ".join(f"{lang} {s['f1']:.2f} ({s.get('sentences', '?')} sentences)" for lang, s in test.items())
        lines += [f"Test F1 (entity-level micro, one seed: no spread; `pram experiment` gives it over seeds): "
                  f"{cells}.", ""]
    lines += ["```python", "from transformers import pipeline", "",
              'tagger = pipeline("token-classification", model="<this folder>", aggregation_strategy="first")',
              'tagger("Angela Merkel besuchte Paris .")', "```", "",
              "Settings (every field of pram's `TrainConfig`):", "", "| setting | value |", "|---|---|",
              *(f"| {k} | {v} |" for k, v in config.to_dict().items()
                if k not in ("out_dir", "data_dir", "cache_dir", "quiet")), "",
              "Trained with:", "", f"    {train_command(config)}", "", "Exported with:", "", f"    {command}", ""]
    return "\n".join(lines)


def export(checkpoint: str | Path, out: str | Path, encoder: str | None = None, command: str = "",
           scores: str | None = None) -> Path:
    """Write the HuggingFace folder `out` (which must not exist) from a pram checkpoint; return it."""
    from pram.predict import load_trained

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists():
        raise UserError(f"{at(out)}: already exists: pass a new folder to export into")
    model, tokenizer, info = load_trained(checkpoint, "cpu", encoder)
    hf = to_huggingface(model, info["label_names"])
    metrics_file = checkpoint.parent.parent / "metrics.json"
    run_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # written beside, then renamed: an interrupted export leaves no half folder
        with os_errors_of_safetensors(out):
            hf.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(info, run_metrics, command or f"pram export {checkpoint} {out}",
                                                  scores), encoding="utf-8")
        publish_folder(tmp, out, replace=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export_command(checkpoint: str, out: str, encoder: str | None) -> int:
    import shlex
    import sys

    command = "pram " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["export"] else ""
    folder = export(checkpoint, out, encoder, command)
    print(f"exported {checkpoint} to {folder}: "
          f'pipeline("token-classification", model="{folder}", aggregation_strategy="first")')
    return 0
