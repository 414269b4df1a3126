"""Publish a packed model to a local zoo directory or a Hugging Face repository.

    python -m espnet_ofa.bin.publish exp/asr/packed.zip --zoo /shared/zoo [--name fsdd_asr_ofa]
    python -m espnet_ofa.bin.publish exp/asr/packed.zip --zoo hf:owner/repo

A local zoo is found again by name through ``$ESPNET_OFA_ZOO`` (or ``frontend_conf.model``
and ``espnet_ofa.bin.transcribe --model``).
"""

import argparse

from espnet_ofa.bin import reports_errors
from espnet_ofa.zoo import publish


@reports_errors(exit_status=2)
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", help="the packed .zip")
    parser.add_argument("--zoo", required=True, help="a local directory, or hf:owner/repo")
    parser.add_argument("--name", default=None, help="name in the zoo (default: file stem)")
    parser.add_argument("--description", default="")
    args = parser.parse_args(argv)
    where = publish(args.archive, args.zoo, args.name, args.description)
    print(f"published {where}")


if __name__ == "__main__":
    main()
