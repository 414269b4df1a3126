"""Pack a trained model into an ESPnet model-zoo archive.

    python -m espnet_ofa.bin.pack_model ssl --config exp/ofa/config.yaml \
        --model exp/ofa/valid.loss.best.pth --outpath exp/ofa/packed.zip [--results RESULTS.md]
    python -m espnet_ofa.bin.pack_model asr --config exp/asr/config.yaml \
        --model exp/asr/valid.loss.best.pth --outpath exp/asr/packed.zip

``ssl`` packs an OFA SSL model; ``asr``/``slu``/``st``/``asr_transducer`` pack a downstream
model with the OFA checkpoint (and every other file its config names) inside. Run from the
recipe directory.
"""

import argparse
from pathlib import Path

from espnet_ofa.bin import reports_errors
from espnet_ofa.espnet_tasks import task_names
from espnet_ofa.zoo import pack_ofa_ssl
from espnet_ofa.zoo.downstream import pack_downstream


@reports_errors(OSError, exit_status=2)  # ZooError, CheckpointError: the message says the fix
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["ssl", *task_names()])
    parser.add_argument("--config", required=True, help="the experiment's config.yaml")
    parser.add_argument("--model", required=True, help="the model file (.pth)")
    parser.add_argument("--outpath", required=True, help="the .zip to write")
    parser.add_argument("--results", default=None,
                        help="a RESULTS.md whose text goes into the model card")
    args = parser.parse_args(argv)
    results = Path(args.results).read_text(encoding="utf-8") if args.results else None
    if args.task == "ssl":
        out = pack_ofa_ssl(args.config, args.model, args.outpath, results=results)
    else:
        out = pack_downstream(args.task, args.config, args.model, args.outpath, results=results)
    print(f"packed {out}")


if __name__ == "__main__":
    main()
