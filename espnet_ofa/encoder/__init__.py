"""Downstream encoders for ESPnet's ``encoder:`` choice (registered with the frontends, see
`espnet_ofa.registration`): ``blstm``, ESPnet's ``rnn`` encoder without packed sequences
and with dropout in training only."""
