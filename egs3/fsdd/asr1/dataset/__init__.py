"""The FSDD connected-digit sets of this recipe (espnet3 loads ``Dataset`` and
``DatasetBuilder`` from here): the same data as ``egs2/fsdd/asr1``, written by
`espnet_ofa.integrations.espnet3_data`."""

from espnet_ofa.integrations.espnet3_data import FsddBuilder as DatasetBuilder
from espnet_ofa.integrations.espnet3_data import FsddDataset as Dataset

__all__ = ["Dataset", "DatasetBuilder"]
