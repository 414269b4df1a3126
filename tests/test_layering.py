"""The package's layering: lower layers never import upper ones.

Layers, lowest first (a unit is a subpackage or a top-level module of ``espnet_ofa``; a unit
may import units of its own layer and of lower layers, at module level or inside functions):

0. ``constants``, ``fileio``, ``espnet_tasks``, ``lazy_exports`` (standard library only), ``data`` (data
   dirs, audio, waveform checks): the base, usable by all;
1. ``compression``: CIF and rate control (pure torch);
2. ``models``: the student and its losses;
3. ``teachers``, ``segmentation``: teacher models and pseudo boundaries from them;
4. ``zoo``: pack, verify, publish and unpack archives (packing checks that an SSL model
   loads, so it sits above ``models``);
5. ``tasks``, ``frontend``, ``encoder``: the ESPnet task, frontend and downstream encoder
   (``frontend_conf.model`` may be a zoo name, so the frontend asks the zoo);
6. ``inference``, ``system_speed``, ``registration``, ``export`` and the package root:
   ESPnet's Speech2* with our models and their timing, the import hook that registers the
   frontend, the Hugging Face export;
7. ``recipe``, ``integrations``: recipe stages, and the other toolkits' entry points (s3prl,
   espnet3, whose recipe reads the FSDD data the recipe layer writes);
8. ``bin``: command-line entry points.
"""

import ast
import subprocess
import sys
from pathlib import Path

import espnet_ofa

PACKAGE = Path(espnet_ofa.__file__).parent

LAYERS = [
    {"constants", "fileio", "espnet_tasks", "lazy_exports", "data"},
    {"compression"},
    {"models"},
    {"teachers", "segmentation"},
    {"zoo"},
    {"tasks", "frontend", "encoder"},
    {"inference", "system_speed", "registration", "export", "__init__"},
    {"recipe", "integrations"},
    {"bin"},
]
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


# Imported at interpreter start-up by the .pth hook: the standard library only.
STDLIB_ONLY = ["espnet_ofa/__init__.py", "espnet_ofa/registration.py",
               "espnet_ofa/espnet_tasks.py", "espnet_ofa/fileio.py", "espnet_ofa/constants.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, top_level_only: bool = False):
    """(line, imported module) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            yield node.lineno, module


def test_no_lower_layer_imports_an_upper_one():
    problems, unknown = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if unit(importer) not in LEVEL:
            unknown.add(unit(importer))
            continue
        for line, imported in imports(path):
            if not imported.startswith("espnet_ofa."):
                continue
            if unit(imported) not in LEVEL:
                unknown.add(unit(imported))
            elif LEVEL[unit(imported)] > LEVEL[unit(importer)]:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {unit(importer)} "
                                f"(layer {LEVEL[unit(importer)]}) imports {imported} "
                                f"(layer {LEVEL[unit(imported)]})")
    assert not unknown, f"units missing from LAYERS (place them in the docstring's order): {unknown}"
    assert not problems, "lower layers import upper ones:\n" + "\n".join(problems)


def test_start_up_modules_import_only_the_standard_library():
    for rel in STDLIB_ONLY:
        path = PACKAGE.parent / rel
        for line, imported in imports(path, top_level_only=True):
            top = imported.split(".")[0]
            allowed = (top in sys.stdlib_module_names or top == "__future__"
                       or f"espnet_ofa/{imported.split('.', 1)[-1].replace('.', '/')}.py" in STDLIB_ONLY)
            assert allowed, f"{rel}:{line} imports {imported} at module level"


def test_models_do_not_load_the_data_dir_code():
    probe = ("import sys, espnet_ofa.models.student; "
             "print(sorted(m for m in sys.modules if m.startswith('espnet_ofa.data')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "['espnet_ofa.data', 'espnet_ofa.data.waveform']"
