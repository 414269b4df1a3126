#!/usr/bin/env python3
"""CPU seconds (process time, one thread) per training batch of the speechocean762 models,
for the compute estimate of docs/speechocean762.md: a batch of 13 utterances x 4.1 s (the
mean folded batch and duration of data/pretrain), random weights and audio (the cost does
not depend on them). The frozen OFA student (conf/train_ofa_small.yaml) and the downstream
head (2 BLSTM layers of 128 -> a 101-unit CTC output) at 20, 40 and 90 ms, and one OFA
pretraining step (student forward and backward).

    python local/benchmark_steps.py
"""

import time
from typing import Callable

import torch
import yaml

from espnet_ofa.models.student import build_student

BATCH, SECONDS = 13, 4.1


def cpu_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def main() -> None:
    torch.set_num_threads(1)
    conf = yaml.safe_load(open("conf/train_ofa_small.yaml", encoding="utf-8"))
    student = build_student(conf["student_preset"], **conf["student_conf"],
                            frame_period_range=(conf["rate_conf"]["low"],
                                                conf["rate_conf"]["high"]))
    wav = torch.randn(BATCH, int(SECONDS * 16000)) * 0.1
    lengths = torch.full((BATCH,), wav.shape[1])
    dim = student.config.embed_dim
    student.eval()
    for period in (20, 40, 90):
        def frozen(p: float = period):
            with torch.no_grad():
                return student(wav, lengths, frame_period=p)
        feats = torch.stack(frozen().hidden).mean(0)
        lstm = torch.nn.LSTM(dim, 128, num_layers=2, bidirectional=True, batch_first=True)
        head = torch.nn.Linear(256, 101)

        def downstream():
            y, _ = lstm(feats)
            head(y).log_softmax(-1).sum().backward()
        print(f"{period} ms: frozen OFA forward {cpu_seconds(frozen):.2f} s/batch, "
              f"BLSTM + CTC head forward+backward {cpu_seconds(downstream):.2f} s/batch "
              f"({feats.shape[1]} frames)")
    student.train()

    def pretraining_step():
        out = student(wav, lengths, frame_period=55)
        sum(h.pow(2).mean() for h in out.hidden).backward()
    print(f"OFA student forward+backward (55 ms): {cpu_seconds(pretraining_step, 2):.2f} s/batch")


if __name__ == "__main__":
    main()
