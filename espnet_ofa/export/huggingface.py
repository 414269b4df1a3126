"""Export an OFA SSL model as a Hugging Face ``transformers`` model directory.

    DIR/config.json                 OFAConfig (the student's sizes) + auto_map for trust_remote_code
    DIR/model.safetensors           the student's weights (no distillation heads)
    DIR/preprocessor_config.json    a Wav2Vec2FeatureExtractor at 16 kHz (raw waveform, no normalising)
    DIR/modeling_ofa.py             `espnet_ofa.export.hf_modeling`, imports made relative
    DIR/ofa_*.py                    the package modules it needs (student, fronts, CIF, rate, ...)
    DIR/README.md                   the model card: trained period range, how to choose a period

The model code is generated from this package's own source files at export time: every
``espnet_ofa`` module that `hf_modeling` reaches through imports is copied with its
``espnet_ofa`` imports rewritten as relative ones, so the directory runs with torch,
torchaudio and transformers alone and always matches the package that wrote it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict

from espnet_ofa.compression import INPUT_PERIOD_MS
from espnet_ofa.fileio import PathLike
from espnet_ofa.models.student import SAMPLE_RATE, OFAStudent

PACKAGE = "espnet_ofa"
ENTRY_MODULE = "espnet_ofa.export.hf_modeling"
MODELING_FILE = "modeling_ofa"


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find the source of {module}")
    return Path(spec.origin)


def _flat_name(module: str) -> str:
    """``espnet_ofa.models.student`` -> ``ofa_models_student``; the entry -> modeling_ofa."""
    if module == ENTRY_MODULE:
        return MODELING_FILE
    return "ofa_" + module[len(PACKAGE) + 1:].replace(".", "_")


def _package_imports(source: str, path: Path) -> list:
    """The ``espnet_ofa`` modules ``source`` imports, anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == PACKAGE or node.module.startswith(PACKAGE + "."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    raise ValueError(
                        f"{path}: `import {alias.name}` cannot be made relative in an exported "
                        f"model; write `from {alias.name.rsplit('.', 1)[0]} import ...`")
    return found


_FROM_IMPORT = re.compile(r"^(\s*)from\s+(espnet_ofa(?:\.\w+)*)\s+import\b", re.MULTILINE)


def model_sources() -> Dict[str, str]:
    """{file name: source} of the self-contained model code (entry point and its closure)."""
    sources: Dict[str, str] = {}
    pending = [ENTRY_MODULE]
    while pending:
        module = pending.pop()
        name = _flat_name(module)
        if name + ".py" in sources:
            continue
        path = _module_file(module)
        text = path.read_text(encoding="utf-8")
        pending.extend(_package_imports(text, path))
        text = _FROM_IMPORT.sub(lambda m: f"{m.group(1)}from .{_flat_name(m.group(2))} import",
                                text)
        sources[name + ".py"] = text
    return sources


def _model_card(student: OFAStudent, source: str, name: str) -> str:
    config = student.config
    low, high = config.frame_period_range
    examples = sorted({low, *[p for p in (20.0, 40.0, 60.0, 80.0) if low < p < high], high})
    rows = "\n".join(
        f"| {p:g} ms | {1000 / p:.1f} | {INPUT_PERIOD_MS / p:.2f} |" for p in examples)
    return f"""---
library_name: transformers
tags: [audio, speech, self-supervised-learning, espnet, once-for-all]
---

# {name}: a once-for-all (OFA) speech SSL model

One model whose output frame period is chosen at inference, anywhere in its trained range
**{low:g}-{high:g} ms** (a standard SSL model runs at {INPUT_PERIOD_MS:g} ms). Exported by
espnet_ofa from `{source}`: {config.num_layers} Transformer layers x {config.embed_dim}-d,
`{config.front}` waveform front, `{config.compression}` compression.

## Use

Needs `torch`, `torchaudio` and `transformers` (not espnet_ofa); 16 kHz mono audio.

```python
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("DIR", trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained("DIR")
batch = extractor([wav1, wav2], sampling_rate=16000, return_tensors="pt", padding=True)
out = model(batch.input_values, attention_mask=batch.attention_mask, frame_period=40.0)
out.last_hidden_state   # (B, T', {config.embed_dim}), zero past each utterance's length
out.hidden_states       # {config.num_layers + 1} tensors: the Transformer's input and each layer's output
out.output_lengths      # (B,) frames per utterance
```

An utterance of N samples has T = (N - 400) // 320 + 1 frames of {INPUT_PERIOD_MS:g} ms and
gives exactly `round(T * {INPUT_PERIOD_MS:g} / frame_period)` output frames (at least one).
`lam=` (the OFA paper's lambda in [0, 2]: 0 keeps every {INPUT_PERIOD_MS:g} ms frame, 1 runs
at the model's own predicted rate) can be given instead of `frame_period`; its length is
data-dependent. With neither, the model runs at lam = 1. A period outside {low:g}-{high:g} ms is
refused with an error; so is `sampling_rate=` other than {SAMPLE_RATE}.

## Choosing a period

The Transformer runs on `{INPUT_PERIOD_MS:g} / frame_period` as many frames as at
{INPUT_PERIOD_MS:g} ms, so its cost falls about in proportion:

| frame_period | frames per second | Transformer frames vs {INPUT_PERIOD_MS:g} ms |
| --- | --- | --- |
{rows}

Short periods keep more detail (phone-level tasks, character CTC); long periods suit
utterance-level tasks (intent, speaker, emotion) and word/BPE units. For character CTC
keep at least one frame per character: about 12-15 characters per second of speech means
periods up to about 60 ms. Try two or three periods on a development set: the same model
serves all of them.
"""


def export_huggingface(model: PathLike, out_dir: PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` (an OFA .pth, packed .zip or zoo name) as a transformers directory.

    The directory is written beside ``out_dir`` under a temporary name and moved into place,
    so an interrupted export leaves no half-written model.

    Raises:
        CheckpointError / ZooError: ``model`` is missing, unreadable or not an OFA model.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    from espnet_ofa.export.hf_modeling import OFAConfig, OFAModel
    from espnet_ofa.frontend.ofa import resolve_model
    from espnet_ofa.models.pretrained import load_student

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose a new --out or pass --overwrite")
    checkpoint = resolve_model(model)
    student = load_student(checkpoint)
    config = OFAConfig(
        student_conf=student.config.to_dict(),
        sampling_rate=SAMPLE_RATE,
        auto_map={"AutoConfig": f"{MODELING_FILE}.OFAConfig",
                  "AutoModel": f"{MODELING_FILE}.OFAModel"},
    )
    exported = OFAModel(config)
    weights = {k: v for k, v in student.state_dict().items() if not k.startswith("heads.")}
    exported.student.load_state_dict(weights)

    from transformers import Wav2Vec2FeatureExtractor

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        exported.save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
            do_normalize=False, return_attention_mask=True,
        ).save_pretrained(tmp)
        for name, text in model_sources().items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "README.md").write_text(
            _model_card(student, str(model), out_dir.name), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
