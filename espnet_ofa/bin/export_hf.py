"""Export an OFA SSL model as a Hugging Face transformers model directory.

    python -m espnet_ofa.bin.export_hf --model exp/ofa/valid.loss.best.pth --out hf/ofa_fsdd
    python -m espnet_ofa.bin.export_hf --model packed.zip --out hf/ofa_fsdd     # or a zoo name

Load it with ``AutoModel.from_pretrained("hf/ofa_fsdd", trust_remote_code=True)``; see the
README.md written into the directory.
"""

import argparse

from espnet_ofa.bin import reports_errors
from espnet_ofa.export.huggingface import export_huggingface


@reports_errors(OSError, exit_status=2)  # CheckpointError, ZooError: the message says the fix
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True,
                        help="an OFA checkpoint (.pth, config.yaml beside it), a packed .zip "
                             "or a zoo name")
    parser.add_argument("--out", required=True, help="the directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    out = export_huggingface(args.model, args.out, overwrite=args.overwrite)
    print(f"exported {out}")


if __name__ == "__main__":
    main()
