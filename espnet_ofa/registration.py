"""Make ``frontend: ofa`` known to ESPnet's tasks without changing ESPnet's files.

ESPnet resolves ``frontend: NAME`` through a `ClassChoices` registry that each task module
(``espnet2.tasks.asr``, ``slu``, ``st``, ``asr_transducer``, and espnet3's copies such as
``espnet3.systems.esp2_asr.task``) builds for itself, with no plug-in mechanism. So ``ofa``
is added to each registry right after the module is imported (with the downstream
encoder ``blstm``, `espnet_ofa.encoder.blstm`, in ``encoder_choices``), by an import hook:

* ``espnet_ofa_register.pth``, installed in site-packages with the package, runs
  `install_import_hook` at interpreter start-up. That only puts a tiny finder on
  ``sys.meta_path``: it imports neither torch nor ESPnet, and costs nothing until one of
  the task modules is imported.
* When one is, the finder lets the normal loader run the module, then registers the
  frontend in its ``frontend_choices`` and wraps its task's ``build_model`` so that models
  with an OFA frontend get their forward hooks (`espnet_ofa.frontend.espnet_hooks`), and
  its ``build_model_from_file`` (what ESPnet's inference classes call, never training) so
  that only decoding builds obey the ``ESPNET_OFA_FRAME_PERIOD``/``ESPNET_OFA_LAM`` override.

The same hook adds the s3prl upstream ``ofa_local`` to ``s3prl.hub`` (`PLUGIN_MODULES`,
see `espnet_ofa.integrations.s3prl`). Every process gets it: ``python -m espnet2.bin.asr_train``, its spawned DDP workers (fresh
interpreters that read the .pth too), ``*_inference`` and ``espnet2.bin.pack``. For library
use (or with the hook disabled by ``ESPNET_OFA_NO_IMPORT_HOOK=1``) call `register`.

This module is imported at start-up: keep its top-level imports to the standard library
(and `espnet_ofa.espnet_tasks`, which is standard library only).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from types import ModuleType
from typing import Dict, List

from espnet_ofa.espnet_tasks import TASKS

FRONTEND_NAME = "ofa"
# The same frontend on features computed once (espnet_ofa.recipe.feature_cache).
CACHED_FRONTEND_NAME = "ofa_cached"
# A frozen off-the-shelf SSL model (e.g. the OFA model's teacher), the pooled rival's other arm.
TEACHER_FRONTEND_NAME = "ssl_teacher"
CACHED_TEACHER_FRONTEND_NAME = "ssl_teacher_cached"
# Each frontend whose frozen SSL features the recipes compute once -> its frontend on them.
CACHED_FRONTENDS: Dict[str, str] = {
    FRONTEND_NAME: CACHED_FRONTEND_NAME,
    TEACHER_FRONTEND_NAME: CACHED_TEACHER_FRONTEND_NAME,
}
# Task module -> the AbsTask subclass whose build_model is wrapped (from the task table):
# ESPnet2's task modules and espnet3's copies of them.
TASK_MODULES: Dict[str, str] = {
    module: task.train_class for task in TASKS.values() for module in task.train_modules
}
# Other toolkits' registries, filled in after their module is imported:
# module -> "espnet_ofa module:function" called with the imported module.
PLUGIN_MODULES: Dict[str, str] = {
    "s3prl": "espnet_ofa.integrations.s3prl_compat:patch_torchaudio",  # before s3prl.hub runs
    "s3prl.hub": "espnet_ofa.integrations.s3prl:register_hub",          # s3prl upstream ofa_local
}
# ``encoder: blstm`` (espnet_ofa.encoder.blstm): ESPnet's rnn encoder without packing.
BLSTM_ENCODER_NAME = "blstm"
DISABLE_ENV = "ESPNET_OFA_NO_IMPORT_HOOK"
_WRAPPED = "_espnet_ofa_wrapped"


def _wrap_build_model(task_cls: type) -> None:
    """Make ``task_cls.build_model`` attach the OFA forward hooks to the models it builds."""
    current = task_cls.__dict__.get("build_model")
    func = getattr(current, "__func__", None)
    if func is None or getattr(func, _WRAPPED, False):
        return  # inherited (its owner is wrapped) or already done

    @functools.wraps(func)
    def build_model(cls, *args, **kwargs):
        model = func(cls, *args, **kwargs)
        from espnet_ofa.frontend.espnet_hooks import attach_rate_learning

        attach_rate_learning(model)  # a no-op unless model.frontend is an OFAFrontend
        return model

    setattr(build_model, _WRAPPED, True)
    task_cls.build_model = classmethod(build_model)


def _wrap_build_model_from_file(task_cls: type) -> None:
    """Make ``task_cls.build_model_from_file`` build inside `decoding_build` (see
    `espnet_ofa.frontend.ofa`): the environment's rate override then reaches decoding only."""
    func = getattr(getattr(task_cls, "build_model_from_file", None), "__func__", None)
    if func is None or getattr(func, _WRAPPED, False):
        return

    @functools.wraps(func)
    def build_model_from_file(cls, config_file=None, model_file=None, *args, **kwargs):
        from espnet_ofa.frontend.ofa import decoding_build
        from espnet_ofa.models.pretrained import check_checkpoint_integrity, check_finite_weights

        # torch.load reads damaged tensor bytes as numbers: refuse them (and NaN/Inf).
        if model_file is not None and os.path.isfile(model_file):
            check_checkpoint_integrity(model_file)
        with decoding_build():
            model, train_args = func(cls, config_file, model_file, *args, **kwargs)
        if model_file is not None:
            check_finite_weights(dict(model.named_parameters()), str(model_file))
        return model, train_args

    setattr(build_model_from_file, _WRAPPED, True)
    task_cls.build_model_from_file = classmethod(build_model_from_file)


def register_task_module(module: ModuleType) -> None:
    """Add ``ofa`` and ``ssl_teacher`` (and their cached forms) to ``module.frontend_choices``
    and ``blstm`` to its ``encoder_choices`` (where the task has one), and wrap its task's
    ``build_model``."""
    from espnet_ofa.encoder.blstm import BLSTMEncoder
    from espnet_ofa.frontend.cached import CachedOFAFrontend, CachedTeacherFrontend
    from espnet_ofa.frontend.ofa import OFAFrontend
    from espnet_ofa.frontend.teacher import SSLTeacherFrontend

    choices = getattr(module, "frontend_choices", None)
    if choices is None:
        raise RuntimeError(f"{module.__name__} has no frontend_choices; ESPnet changed?")
    choices.classes[FRONTEND_NAME] = OFAFrontend
    choices.classes[CACHED_FRONTEND_NAME] = CachedOFAFrontend
    choices.classes[TEACHER_FRONTEND_NAME] = SSLTeacherFrontend
    choices.classes[CACHED_TEACHER_FRONTEND_NAME] = CachedTeacherFrontend
    encoders = getattr(module, "encoder_choices", None)
    if encoders is not None:
        encoders.classes[BLSTM_ENCODER_NAME] = BLSTMEncoder
    task_cls = getattr(module, TASK_MODULES.get(module.__name__, ""), None)
    if isinstance(task_cls, type):
        _wrap_build_model(task_cls)
        _wrap_build_model_from_file(task_cls)


def register_plugin_module(module: ModuleType) -> None:
    """Run the `PLUGIN_MODULES` registration of ``module`` (e.g. s3prl's ``ofa_local``)."""
    import importlib

    target, function = PLUGIN_MODULES[module.__name__].split(":")
    getattr(importlib.import_module(target), function)(module)


def _after_import(module: ModuleType) -> None:
    try:
        if module.__name__ in PLUGIN_MODULES:
            register_plugin_module(module)
        else:
            register_task_module(module)
    except Exception as err:  # never break ESPnet (or s3prl) itself over the plug-in
        warnings.warn(
            f"espnet_ofa could not register in {module.__name__}: "
            f"{type(err).__name__}: {err}",
            RuntimeWarning,
            stacklevel=2,
        )


class _RegisterOnImport:
    """A ``sys.meta_path`` finder that only piggybacks on the imports of `TASK_MODULES`.

    It asks the other finders for the real spec and patches that spec's loader instance
    (one per module) to call `_after_import` once the module has executed.
    """

    espnet_ofa_hook = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TASK_MODULES and fullname not in PLUGIN_MODULES:
            return None
        spec = None
        for finder in sys.meta_path:
            if getattr(finder, "espnet_ofa_hook", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_original = loader.exec_module

        def exec_module(module):
            exec_original(module)
            _after_import(module)

        loader.exec_module = exec_module
        return spec


def install_import_hook() -> bool:
    """Arm the import hook (idempotent). Returns False when disabled by the environment."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return False
    if not any(getattr(f, "espnet_ofa_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
    return True


def register() -> List[str]:
    """Register ``frontend: ofa`` for library use.

    Registers in the task modules already imported and arms the import hook for the others
    (so ``espnet_ofa.register()`` may come before or after ``import espnet2.tasks.asr``).
    Returns the modules registered now: task modules, and other toolkits' modules already
    imported (e.g. ``s3prl``, which ESPnet's task modules import).
    """
    if not any(getattr(f, "espnet_ofa_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())  # explicit call: even if disabled
    done = []
    for name in TASK_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "frontend_choices"):
            register_task_module(module)
            done.append(name)
    for name in PLUGIN_MODULES:
        if name in sys.modules:
            register_plugin_module(sys.modules[name])
            done.append(name)
    return done
