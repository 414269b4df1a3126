"""The package builds on torchaudio's public API only (no underscore names, no
``components`` or ``utils.import_*`` internals), so a torchaudio upgrade cannot break it
silently; the presets that replace the bundles' private parameters are the right ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torchaudio

from espnet_ofa.teachers.bundles import KNOWN_BUNDLES, _preset_of

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_ofa"
PRIVATE_MODULES = ("torchaudio.models.wav2vec2.components", "torchaudio.models.wav2vec2.utils")


def torchaudio_uses(tree: ast.AST):
    """(what, line) for every import from torchaudio and every attribute read off a name
    bound to a torchaudio module or a bundle."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("torchaudio"):
                    aliases.add((alias.asname or alias.name).split(".")[0])
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torchaudio"):
            for alias in node.names:
                aliases.add(alias.asname or alias.name)
                yield f"{node.module}.{alias.name}", node.lineno
    aliases.add("bundle")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            yield f"{node.value.id}.{node.attr}", node.lineno
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" \
                and len(node.args) >= 2 and getattr(node.args[0], "id", None) in aliases \
                and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            yield f"getattr(..., {node.args[1].value!r})", node.lineno


def test_no_private_torchaudio_names():
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for what, line in torchaudio_uses(ast.parse(path.read_text(), str(path))):
            parts = what.split(".")
            if what.startswith(PRIVATE_MODULES) or any(p.startswith("_") for p in parts[1:]) \
                    or "getattr(" in what:
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not offending, "private torchaudio API in use:\n" + "\n".join(offending)


@pytest.mark.parametrize("name", sorted(KNOWN_BUNDLES))
def test_bundle_presets_rebuild_the_bundles_models(name):
    bundle = getattr(torchaudio.pipelines, name)
    # The bundle's own (private) parameters, read here only to check the public preset.
    build = torchaudio.models.wavlm_model if name.startswith("WAVLM") else torchaudio.models.wav2vec2_model
    with torch.device("meta"):
        model = build(**bundle._params)
    assert _preset_of(name, model) == KNOWN_BUNDLES[name][0]
    with torch.device("meta"):
        other = torchaudio.models.hubert_large() if name != "HUBERT_LARGE" else torchaudio.models.hubert_base()
    assert _preset_of(name, other) is None
