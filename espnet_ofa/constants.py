"""Facts every layer of the package shares (standard library only).

The models read 16 kHz audio and their CNN (or mel) front makes one frame per 20 ms:
``FRAME_HOP`` samples, ``(N - 400) // 320 + 1`` frames for N samples. CIF compresses these
frames, so every frame period is measured against ``INPUT_PERIOD_MS``.
"""

# Sample rate (Hz) of every model's input.
SAMPLE_RATE = 16000
# Frame period (ms) of the front's frames, the input of the compression.
INPUT_PERIOD_MS = 20.0
# Samples per input frame: the total stride of the front.
FRAME_HOP = int(SAMPLE_RATE * INPUT_PERIOD_MS) // 1000
# The teacher layers the student learns to predict by default (DistilHuBERT's choice for a
# 12-layer teacher).
DISTILLED_LAYERS = (4, 8, 12)
