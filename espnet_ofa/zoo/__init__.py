"""Model zoo: pack OFA models into ESPnet archives, publish, download and unpack them."""

from espnet_ofa.zoo.archive import (
    ZooError,
    pack_ofa_ssl,
    sha256sum,
    unpack_archive,
    unpacked_ofa_model,
    verify_archive,
    write_model_card,
)
from espnet_ofa.zoo.hub import (
    MODEL_TABLE,
    ZOO_ENV,
    check_name,
    download_and_unpack,
    locate,
    publish,
    resolve_ofa_checkpoint,
)

__all__ = [
    "MODEL_TABLE", "ZOO_ENV", "ZooError", "check_name", "download_and_unpack", "locate",
    "pack_ofa_ssl", "publish", "resolve_ofa_checkpoint", "sha256sum", "unpack_archive",
    "unpacked_ofa_model", "verify_archive", "write_model_card",
]
