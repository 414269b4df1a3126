"""Best-path CTC decoding in place of ESPnet's beam search (espnet_ofa.inference)."""

from types import SimpleNamespace

import pytest
import torch

from espnet_ofa.inference import CTCGreedySearch, use_ctc_greedy_search
from espnet_ofa.recipe.decode import _load_inference

VOCAB = 6  # 0 = blank, 1-4 tokens, 5 = <sos/eos>
SOS = EOS = VOCAB - 1


def peaky_ctc():
    """ESPnet's CTC head whose log-probabilities follow a one-hot encoder output."""
    from espnet2.asr.ctc import CTC

    ctc = CTC(odim=VOCAB, encoder_output_size=VOCAB)
    with torch.no_grad():
        ctc.ctc_lo.weight.copy_(8.0 * torch.eye(VOCAB))
        ctc.ctc_lo.bias.zero_()
    return ctc.eval()


def frames(labels):
    """(T, VOCAB) one-hot encoder output of frame labels."""
    return torch.nn.functional.one_hot(torch.tensor(labels), VOCAB).float()


def test_repeats_merge_and_blanks_drop():
    ctc = peaky_ctc()
    x = frames([0, 2, 2, 0, 3, 3, 0, 0, 2, 1, 1])
    (hyp,) = CTCGreedySearch(ctc, SOS, EOS)(x)
    assert hyp.yseq.tolist() == [SOS, 2, 3, 2, 1, EOS]
    # The score is the best path's log-probability.
    with torch.no_grad():
        logp = ctc.log_softmax(x[None])[0]
    assert float(hyp.score) == pytest.approx(float(logp.max(-1).values.sum()))
    # A label repeated across a blank is two tokens; all blanks: an empty hypothesis.
    assert CTCGreedySearch(ctc, SOS, EOS)(frames([4, 0, 4]))[0].yseq.tolist() == [SOS, 4, 4, EOS]
    assert CTCGreedySearch(ctc, SOS, EOS)(frames([0, 0, 0]))[0].yseq.tolist() == [SOS, EOS]


def test_agrees_with_the_prefix_beam_search_on_a_confident_model():
    """Where the frame posteriors are peaked, ESPnet's CTC prefix beam search finds the
    same best hypothesis."""
    from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
    from espnet2.legacy.nets.scorers.ctc import CTCPrefixScorer

    ctc = peaky_ctc()
    search = BatchBeamSearch(scorers={"ctc": CTCPrefixScorer(ctc=ctc, eos=EOS)},
                             weights={"ctc": 1.0}, beam_size=4, vocab_size=VOCAB,
                             sos=SOS, eos=EOS, pre_beam_score_key=None)
    for labels in ([0, 1, 1, 0, 2, 3, 3, 0], [3, 0, 3, 4, 0, 0, 1, 2, 2]):
        x = frames(labels)
        beam = search(x=x, maxlenratio=0.0, minlenratio=0.0)[0].yseq.tolist()
        assert CTCGreedySearch(ctc, SOS, EOS)(x)[0].yseq.tolist() == beam


def fake_speech2text(ctc_weight):
    model = SimpleNamespace(ctc=peaky_ctc(), ctc_weight=ctc_weight, sos=SOS, eos=EOS,
                            blank_id=0)
    return SimpleNamespace(asr_model=model, beam_search=SimpleNamespace(token_list=list("_abcd~")))


def test_replaces_the_beam_search_of_a_ctc_only_model():
    s2t = use_ctc_greedy_search(fake_speech2text(1.0), "asr")
    assert isinstance(s2t.beam_search, CTCGreedySearch)
    assert s2t.beam_search.token_list == list("_abcd~")  # ESPnet reads it for interCTC


def test_refuses_a_model_with_an_attention_decoder():
    with pytest.raises(ValueError, match=r"ctc_weight 0.3: decode it with the beam search"):
        use_ctc_greedy_search(fake_speech2text(0.3), "asr")


def test_inference_yaml_option_is_checked(tmp_path):
    conf = tmp_path / "decode.yaml"
    conf.write_text("ctc_greedy: yes please\n")
    with pytest.raises(ValueError, match="ctc_greedy must be true or false"):
        _load_inference("asr", tmp_path / "config.yaml", tmp_path / "model.pth", "cpu", conf)


class PackingEncoder(torch.nn.Module):
    """Frame labels in, one-hot frames out, through ``pack_padded_sequence`` as ESPnet's RNN
    encoders do: a batch whose lengths do not decrease is refused."""

    def encode(self, speech, lengths):
        enc = torch.nn.functional.one_hot(speech.long(), VOCAB).float()
        packed = torch.nn.utils.rnn.pack_padded_sequence(enc, lengths, batch_first=True)
        enc, enc_lens = torch.nn.utils.rnn.pad_packed_sequence(packed, batch_first=True)
        return enc, enc_lens


def test_a_padded_batch_reaches_an_rnn_encoder_longest_first_and_comes_back_in_order():
    from espnet_ofa.system_speed import timed_decode

    ctc = peaky_ctc()
    s2t = SimpleNamespace(asr_model=PackingEncoder(), beam_search=CTCGreedySearch(ctc, SOS, EOS),
                          maxlenratio=0.0, minlenratio=0.0)
    batch = [torch.tensor(labels, dtype=torch.float32)
             for labels in ([1, 0, 2], [3, 3, 0, 4, 0, 1], [2, 2, 0, 2])]  # not sorted
    results, timing = timed_decode(s2t, "asr", batch)
    assert [r[0].yseq.tolist()[1:-1] for r in results] == [[1, 2], [3, 4, 1], [2, 2]]
    assert timing.total > 0
