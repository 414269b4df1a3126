"""A linear probe of frozen representations: does what a model learnt carry to new voices?

Each utterance of a single-word data set (FSDD's single takes: ``text`` is one digit word)
becomes one vector per layer, the mean and standard deviation over time of that layer's
frames; a logistic regression trained on those of the training speakers classifies the
words of other sets (their test takes, a held-out speaker). The classifier is linear and
strongly regularised, the same for every representation, so its accuracies compare
representations with each other and with the MFCC floor; they are not a word error rate
(the pooled statistics make single takes easier than connected digits).

It takes seconds where a pretraining-plus-downstream run takes minutes, which makes it a
screen for teacher and student settings (docs/results/fsdd.md has the numbers).

Extractors turn a (N,) 16 kHz waveform into one (T, D) array per layer:
`teacher_extractor` (any teacher source), `ofa_extractor` (an OFA model at one frame
period) and `mfcc_extractor` (39-d MFCCs, the floor without learning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.data import DataDirError, load_audio, read_kaldi_table
from espnet_ofa.fileio import PathLike
from espnet_ofa.segmentation.pipeline import list_utterances

# (N,) 16 kHz waveform -> one (T, D) float array per layer.
Extractor = Callable[[torch.Tensor], List[np.ndarray]]


@dataclass(frozen=True)
class PooledSet:
    """A data set as probe inputs: ``features`` (U, L, 2D) per utterance and layer, and
    ``labels`` (U,), the words."""

    utts: List[str]
    features: np.ndarray
    labels: np.ndarray


def pool(layers: Sequence[np.ndarray]) -> np.ndarray:
    """[(T, D)] * L -> (L, 2D): the mean and the standard deviation over time of each layer."""
    if not layers:
        raise ValueError("the extractor returned no layers")
    out = []
    for feats in layers:
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise ValueError(
                f"each layer must be a non-empty (T, D) array, got shape {feats.shape}")
        out.append(np.concatenate([feats.mean(axis=0), feats.std(axis=0)]))
    return np.stack(out)


def word_labels(data_dir: PathLike) -> Dict[str, str]:
    """``{utt: word}`` from ``data_dir/text``; every utterance must be exactly one word."""
    text = read_kaldi_table(f"{data_dir}/text")
    for utt, words in text.items():
        if len(words.split()) != 1:
            raise DataDirError(
                f"{data_dir}/text: '{utt}' has {len(words.split())} words ('{words}'); the probe "
                "classifies single-word utterances (e.g. FSDD single takes: the data of ssl1)")
    return text


def pool_data_dir(data_dir: PathLike, extract: Extractor) -> PooledSet:
    """Every utterance of ``data_dir`` (wav.scp and text, any sample rate) through ``extract``."""
    labels = word_labels(data_dir)
    utts, feats = [], []
    for utt, value, segment in list_utterances(data_dir):
        if utt not in labels:
            raise DataDirError(f"{data_dir}/text has no line for '{utt}' of wav.scp")
        wav, _ = load_audio(value, target_sr=SAMPLE_RATE, segment=segment)
        try:
            feats.append(pool(extract(wav)))
        except ValueError as e:
            raise ValueError(f"{data_dir}: utterance '{utt}' ({wav.numel() / SAMPLE_RATE:.3f} s): "
                             f"{e}; remove utterances too short for the model") from None
        utts.append(utt)
    if not utts:
        raise DataDirError(f"{data_dir}: no utterances")
    return PooledSet(utts, np.stack(feats), np.array([labels[u] for u in utts]))


def probe_accuracy(
    train: PooledSet, tests: Mapping[str, PooledSet], c: float = 0.1
) -> Dict[str, Dict[str, float]]:
    """Train one logistic regression per layer (and one on all layers) and score each set.

    Args:
        train: the training speakers' utterances.
        tests: ``{name: set}`` to classify.
        c: inverse L2 strength of the regression (scikit-learn's ``C``); small = simple.
    Returns:
        ``{layer: {name: accuracy}}`` with layers ``"0"``, ``"1"``, ... and ``"all"``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    num_layers = train.features.shape[1]
    for name, test in tests.items():
        if test.features.shape[1:] != train.features.shape[1:]:
            raise ValueError(f"set '{name}' has features of shape {test.features.shape[1:]}, "
                             f"the training set {train.features.shape[1:]}: use one extractor")
    views: List[Tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        (str(k), lambda x, k=k: x[:, k]) for k in range(num_layers)]
    if num_layers > 1:
        views.append(("all", lambda x: x.reshape(len(x), -1)))
    result: Dict[str, Dict[str, float]] = {}
    for layer, view in views:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(view(train.features), train.labels)
        result[layer] = {name: float(np.mean(clf.predict(view(t.features)) == t.labels))
                         for name, t in tests.items()}
    return result


def _valid_frames(out) -> List[np.ndarray]:
    """A batch of one (teacher or student output: ``hidden``, ``lengths``) -> [(T, D)]."""
    n = int(out.lengths[0])
    return [h[0, :n].float().numpy() for h in out.hidden]


def teacher_extractor(source: str) -> Extractor:
    """Every hidden state of a teacher (0 = the Transformer's input ... its last layer)."""
    from espnet_ofa.teachers import load_teacher

    teacher = load_teacher(source, layers=(0,))
    teacher.layers = tuple(range(teacher.num_layers + 1))  # its depth is known once loaded
    return torch.no_grad()(
        lambda wav: _valid_frames(teacher(wav[None], torch.tensor([wav.numel()]))))


def ofa_extractor(model: PathLike, frame_period: float) -> Extractor:
    """Every hidden state of an OFA model at ``frame_period`` ms."""
    from espnet_ofa.compression import Rate
    from espnet_ofa.models.pretrained import load_student

    student = load_student(model).eval()
    student.check_rate(Rate(frame_period=frame_period))

    return torch.no_grad()(lambda wav: _valid_frames(
        student(wav[None], torch.tensor([wav.numel()]), frame_period=frame_period)))


def mfcc_extractor() -> Extractor:
    """39-d MFCCs with deltas (one 'layer'): what a probe gets without any learning.

    Not normalised per utterance: that would leave every utterance a zero mean and unit
    standard deviation, i.e. nothing for the pooled probe to read.
    """
    from espnet_ofa.segmentation.features import mfcc_features

    return lambda wav: [mfcc_features(wav, cmvn=False)]
