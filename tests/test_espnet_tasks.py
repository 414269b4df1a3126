"""The one table of ESPnet tasks: it matches the installed ESPnet, and everything asks it."""

import inspect
import sys

import pytest

from espnet_ofa.espnet_tasks import TASKS, get_task, model_attributes, task_names


@pytest.mark.parametrize("name", list(TASKS))
def test_table_matches_installed_espnet(name):
    import importlib

    task = TASKS[name]
    for module in task.train_modules:  # ESPnet2's task module and espnet3's copies
        train = importlib.import_module(module)
        assert "ofa" in train.frontend_choices.classes, module  # registered by the import hook
        assert isinstance(getattr(train, task.train_class), type), module
    cls = task.inference_cls()
    params = inspect.signature(cls.__init__).parameters
    for key in (task.config_key, task.model_key, *dict(task.inference_kwargs)):
        assert key in params, f"{cls.__module__}.{cls.__name__} takes no {key}"
    assert f"self.{task.model_attribute} = " in inspect.getsource(cls.__init__)


def test_everything_asks_the_table():
    from espnet_ofa.bin import decode, pack_model, transcribe
    from espnet_ofa.registration import TASK_MODULES

    assert TASK_MODULES == {m: t.train_class for t in TASKS.values() for m in t.train_modules}
    assert set(model_attributes()) == {"asr_model", "st_model"}
    for parser, option in ((decode.get_parser(), "--task"),):
        action = next(a for a in parser._actions if option in a.option_strings)
        assert tuple(action.choices) == task_names()
    with pytest.raises(SystemExit):
        pack_model.main(["no_such_task", "--config", "c", "--model", "m", "--outpath", "o"])
    with pytest.raises(SystemExit):
        transcribe.main(["--model", "m", "--task", "no_such_task", "a.wav"])
    with pytest.raises(ValueError, match="task must be one of asr, slu, st, asr_transducer"):
        get_task("tts")


def test_find_ofa_frontend_on_models_and_inference_objects():
    import torch

    from espnet_ofa.frontend import find_ofa_frontend
    from espnet_ofa.frontend.ofa import OFAFrontend

    frontend = OFAFrontend.__new__(OFAFrontend)  # only its type matters here
    torch.nn.Module.__init__(frontend)
    model = torch.nn.Module()
    model.frontend = frontend

    class Speech2Text:
        asr_model = model

    class Speech2Translation:
        st_model = model

    for obj in (frontend, model, Speech2Text(), Speech2Translation()):
        assert find_ofa_frontend(obj) is frontend
    plain = torch.nn.Module()
    plain.frontend = torch.nn.Identity()
    assert find_ofa_frontend(plain) is None and find_ofa_frontend(object()) is None
    assert "espnet_ofa.frontend.ofa" in sys.modules
