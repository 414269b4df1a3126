"""espnet-ofa: once-for-all sequence compression for self-supervised speech models."""

__version__ = "0.1.0"


def register():
    """Register ``frontend: ofa`` in ESPnet's asr/slu/st/asr_transducer tasks.

    Installed packages do this automatically (an import hook armed by
    ``espnet_ofa_register.pth``); call it for library use or when the hook is disabled.
    Imported lazily: ``import espnet_ofa`` stays free of torch and ESPnet.
    """
    from espnet_ofa.registration import register as _register

    return _register()
