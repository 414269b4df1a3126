"""The ESPnet tasks that ``frontend: ofa`` supports: the one table everything else asks.

Registration (which task modules get the frontend), inference (which ``Speech2*`` class
loads a model), decoding, packing and the zoo (which ``meta.yaml`` keys an archive holds)
and the command-line ``--task`` choices all read `TASKS`.

Standard library only: `espnet_ofa.registration` reads this table at interpreter start-up
(from the ``.pth`` import hook), before torch or ESPnet are imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class EspnetTask:
    """One ESPnet task and where its pieces live.

    Attributes:
        name: the task's short name (``--task`` value, ``pack_model`` argument).
        train_module: the ``espnet2.tasks`` module whose ``frontend_choices`` gets ``ofa``.
        train_class: its ``AbsTask`` subclass (``build_model`` gets the OFA hooks).
        espnet3_modules: espnet3's copies of that task module (``espnet3.systems.*``), each
            with its own ``frontend_choices`` and a task class of the same name; they get
            ``ofa`` the same way, so espnet3 systems built with ``task: <module>.<class>``
            accept ``frontend: ofa`` too.
        inference_module: the ``espnet2.bin`` module with the inference class.
        inference_class: the ``Speech2*`` class (its ``from_pretrained`` takes our archives).
        config_key: the inference class' keyword for the training config; also the
            ``meta.yaml`` key of that file in a packed archive (``espnet2.bin.pack``).
        model_key: the same for the model file.
        model_attribute: the inference object's attribute holding the ESPnet model.
        kind: what the model outputs, which decides the data it trains on and how the
            recipes score it: "asr" (a transcript; WER), "slu" (intent and transcript;
            intent accuracy) or "st" (a translation; BLEU).
        inference_kwargs: fixed keywords the inference class needs so that calling it
            returns ESPnet's usual n-best list of ``(text, tokens, token_ids, hyp, ...)``.
    """

    name: str
    train_module: str
    train_class: str
    inference_module: str
    inference_class: str
    config_key: str
    model_key: str
    model_attribute: str
    kind: str
    inference_kwargs: Tuple[Tuple[str, Any], ...] = ()
    espnet3_modules: Tuple[str, ...] = ()

    @property
    def train_modules(self) -> Tuple[str, ...]:
        """Every module whose ``frontend_choices`` gets ``ofa``: ESPnet2's, then espnet3's."""
        return (self.train_module,) + self.espnet3_modules

    def train_cls(self) -> type:
        """Import and return the ``AbsTask`` subclass (imports ESPnet)."""
        return getattr(importlib.import_module(self.train_module), self.train_class)

    def inference_cls(self) -> type:
        """Import and return the ``Speech2*`` class (imports ESPnet)."""
        return getattr(importlib.import_module(self.inference_module), self.inference_class)


TASKS: Dict[str, EspnetTask] = {
    task.name: task
    for task in (
        EspnetTask("asr", "espnet2.tasks.asr", "ASRTask", "espnet2.bin.asr_inference",
                   "Speech2Text", "asr_train_config", "asr_model_file", "asr_model", "asr",
                   espnet3_modules=("espnet3.systems.esp2_asr.task",)),
        EspnetTask("slu", "espnet2.tasks.slu", "SLUTask", "espnet2.bin.slu_inference",
                   "Speech2Understand", "slu_train_config", "slu_model_file", "asr_model", "slu"),
        EspnetTask("st", "espnet2.tasks.st", "STTask", "espnet2.bin.st_inference",
                   "Speech2Text", "st_train_config", "st_model_file", "st_model", "st"),
        # The transducer's Speech2Text returns bare hypotheses unless told to decode them.
        EspnetTask("asr_transducer", "espnet2.tasks.asr_transducer", "ASRTransducerTask",
                   "espnet2.bin.asr_transducer_inference", "Speech2Text", "asr_train_config",
                   "asr_model_file", "asr_model", "asr", (("return_decoded_hyp", True),),
                   espnet3_modules=("espnet3.systems.esp2_asr.src.transducer_task",)),
    )
}


def task_names() -> Tuple[str, ...]:
    """The supported task names, in table order (for ``choices=``)."""
    return tuple(TASKS)


def get_task(name: str) -> EspnetTask:
    """The table entry of ``name``; ``ValueError`` listing the supported tasks otherwise."""
    task = TASKS.get(name)
    if task is None:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {name!r}")
    return task


def task_of_train_module(module_name: str) -> Optional[EspnetTask]:
    """The task whose training module (ESPnet2's or an espnet3 copy) is ``module_name``
    (None if not ours)."""
    for task in TASKS.values():
        if module_name in task.train_modules:
            return task
    return None


def task_of_archive(files: Dict[str, Any]) -> Optional[EspnetTask]:
    """The task whose config and model keys an unpacked archive's ``files`` hold.

    The ASR and transducer archives use the same keys; the first match (ASR) is returned.
    """
    for task in TASKS.values():
        if task.config_key in files and task.model_key in files:
            return task
    return None


def task_kinds() -> Tuple[str, ...]:
    """The kinds of output (`EspnetTask.kind`) of the supported tasks, in table order."""
    return tuple(dict.fromkeys(task.kind for task in TASKS.values()))


def model_attributes() -> Tuple[str, ...]:
    """The attributes under which inference objects hold their ESPnet model."""
    return tuple(dict.fromkeys(task.model_attribute for task in TASKS.values()))


__all__ = ["EspnetTask", "TASKS", "get_task", "model_attributes", "task_kinds", "task_names",
           "task_of_archive", "task_of_train_module"]
