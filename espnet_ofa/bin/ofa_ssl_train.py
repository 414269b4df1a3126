"""OFA pretraining by distillation: ``python -m espnet_ofa.bin.ofa_ssl_train --config ...``.

Takes every option of ESPnet's trainers (``--ngpu``, ``--resume``, ``--use_amp``,
``--collect_stats``, ...) plus the ``ofa_ssl`` task's; ``--print_config`` lists them.
"""

from espnet_ofa.tasks.ofa_ssl import OFASSLTask


def get_parser():
    return OFASSLTask.get_parser()


def main(cmd=None) -> None:
    OFASSLTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
