"""``encoder: blstm`` (espnet_ofa.encoder.blstm): ESPnet's ``encoder: rnn`` (bidirectional
LSTM layers with projections) without packed sequences: the same function and gradients,
checkpoints of ``encoder: rnn`` load into it, padding changes nothing, and dropout is off
in ``eval()`` (ESPnet's applies it at decoding too)."""

import pytest
import torch
from espnet2.asr.encoder.rnn_encoder import RNNEncoder

from espnet_ofa.encoder.blstm import BLSTMEncoder, reverse_within_lengths
from espnet_ofa.registration import BLSTM_ENCODER_NAME

SIZES = dict(num_layers=2, hidden_size=12, output_size=10)


def pair(dropout: float = 0.0):
    """ESPnet's rnn encoder and a blstm one holding its weights."""
    torch.manual_seed(0)
    espnet = RNNEncoder(8, rnn_type="lstm", bidirectional=True, subsample=None,
                        dropout=dropout, **SIZES)
    ours = BLSTMEncoder(8, dropout=dropout, **SIZES)
    ours.load_state_dict(espnet.state_dict())  # ESPnet's parameter names, renamed on load
    return espnet, ours


def batch():
    torch.manual_seed(1)
    lengths = torch.tensor([9, 7, 4])  # sorted: ESPnet's encoder packs with enforce_sorted
    x = torch.randn(3, 9, 8)
    return x, lengths


def test_reverse_within_lengths_keeps_the_padding_and_undoes_itself():
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_within_lengths(x, torch.tensor([4, 2]))
    assert out[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_within_lengths(out, torch.tensor([4, 2])), x)


def test_same_function_and_gradients_as_espnet_rnn_encoder():
    espnet, ours = pair()
    x, lengths = batch()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, la, _ = espnet(xa, lengths)
    yb, lb, states = ours(xb, lengths)
    assert torch.equal(la, lb) and states is None and yb.shape == (3, 9, 10)
    torch.testing.assert_close(yb, ya, atol=1e-6, rtol=1e-5)
    assert float(yb.detach()[2, 4:].abs().max()) == 0.0  # padding zeroed, as ESPnet's
    weights = torch.randn_like(ya)
    (ya * weights).sum().backward()
    (yb * weights).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-6, rtol=1e-5)
    grads = dict(espnet.named_parameters())
    for name, p in ours.named_parameters():  # each weight gets ESPnet's gradient
        layer = name.split(".")[1]
        if ".projection." in name:
            old = f"enc.0.bt{layer}.{name.rsplit('.', 1)[1]}"
        else:
            suffix = "_reverse" if ".backward_lstm." in name else ""
            old = f"enc.0.birnn{layer}.{name.rsplit('.', 1)[1]}{suffix}"
        torch.testing.assert_close(p.grad, grads[old].grad, atol=1e-5, rtol=1e-4)


def test_padding_and_batch_order_change_nothing():
    _, ours = pair()
    x, lengths = batch()
    order = torch.tensor([2, 0, 1])  # unsorted lengths are fine (nothing is packed)
    together, _, _ = ours(x[order], lengths[order])
    for row, i in enumerate(order.tolist()):
        n = int(lengths[i])
        alone, _, _ = ours(x[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(together[row, :n], alone[0], atol=1e-6, rtol=1e-5)


def test_dropout_only_in_training():
    espnet, ours = pair(dropout=0.3)
    x, lengths = batch()
    espnet.eval(), ours.eval()
    with torch.no_grad():
        # ESPnet's between-layer F.dropout ignores eval(): two decodings differ.
        assert not torch.equal(espnet(x, lengths)[0], espnet(x, lengths)[0])
        assert torch.equal(ours(x, lengths)[0], ours(x, lengths)[0])
        ours.train()
        assert not torch.equal(ours(x, lengths)[0], ours(x, lengths)[0])


def test_bad_options_and_state_are_refused():
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        BLSTMEncoder(8, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        BLSTMEncoder(8, dropout=1.0)
    _, ours = pair()
    x, lengths = batch()
    with pytest.raises(ValueError, match="keeps no state"):
        ours(x, lengths, prev_states=[None])


def test_registered_as_an_espnet_encoder_choice():
    import espnet2.tasks.asr
    import espnet2.tasks.slu
    import espnet2.tasks.st

    for module in (espnet2.tasks.asr, espnet2.tasks.slu, espnet2.tasks.st):
        assert module.encoder_choices.classes[BLSTM_ENCODER_NAME] is BLSTMEncoder, module.__name__


def test_every_recipe_config_builds_its_encoder():
    """The recipes' (and espnet3's) configs that name ``encoder: blstm`` give options it takes."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    found = 0
    for path in sorted([*repo.glob("egs2/*/*/conf/**/*.yaml"), *repo.glob("egs3/*/*/conf/*.yaml"),
                        *repo.glob("conf/**/*.yaml")]):
        conf = yaml.safe_load(path.read_text()) or {}
        model = conf.get("model")
        conf = model if isinstance(model, dict) else conf  # espnet3 nests the model block
        if conf.get("encoder") == BLSTM_ENCODER_NAME:
            encoder = BLSTMEncoder(16, **conf.get("encoder_conf", {}))
            assert encoder.output_size() == conf["encoder_conf"]["output_size"], path
            found += 1
    assert found >= 27  # every asr/slu/st downstream of the recipes
