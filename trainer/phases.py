"""Training phases as data (stylegan3's `StyleGAN2Loss.accumulate_gradients(phase)`).

A loss object lists its `Phase`s in the order a step runs them: a name (Dmain, Dreg, Gmain, Greg as
stylegan3; lens), the minibatch interval it runs at, and the function that runs it on the step's
`StepState`. The loop (trainer/train_lib.py) asks which are due (`GANBase.due_phases`) and traces
one step function per distinct answer. TensorFlow-free.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict


@dataclasses.dataclass(frozen=True)
class Phase:
    """One optimizer phase of a step: `run(state)` every `interval` minibatches (at steps
    divisible by it; 1 = every step). Names as stylegan3: Dmain, Dreg, Gmain, Greg (+ lens)."""
    name: str
    run: Callable
    interval: int = 1

    def due(self, step: int) -> bool:
        return step % self.interval == 0


class StepState:
    """What the phases of one step share: the batch and key, the metrics (`sums`: per-replica
    contributions, replica sum = global; `shared`: identical on every replica) and whatever a
    phase leaves for a later one (attributes set by the phases)."""

    def __init__(self, key, **values):
        self.key = key
        self.sums: Dict[str, object] = {}
        self.shared: Dict[str, object] = {}
        self.__dict__.update(values)
