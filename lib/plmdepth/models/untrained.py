"""Untrained twins: a model's architecture and config, freshly initialised with a seed.

A twin answers "how much of this depth profile does the architecture produce before any
training?". `untrained_twin(lm, seed)` re-initialises `lm` in place with its architecture's own
initialiser and renames it:

- a transformers network (`PreTrainedModel`): a fresh network of the same class built from the
  same config under `torch.manual_seed(seed)` (so its `_init_weights` runs on every module),
  whose weights replace the trained ones. (In transformers 5, `model.apply(model._init_weights)`
  on a loaded model leaves weights that are already initialised as they are: that is not a twin.)
- any other network: the family's own initialiser when its loader names one (`lm.initialise`,
  e.g. ProteinMPNN's Xavier initialisation of every matrix), then `reset_parameters()` of every
  module that has one (PyTorch's defaults) for the rest.

Afterwards every parameter tensor is compared with the trained one: a twin in which more than
`MAX_UNCHANGED` of the parameter elements kept their trained values is refused, naming them
(tensors the initialiser sets to one constant, such as zero biases and unit norms, are not
counted: a model that never moved them from there keeps them legitimately).

A twin is asked for as `<model>@random<seed>` (`antiberty@random1`; `models.resolve`); its
results go to `results/<slug>@random<seed>/`, and run.json's model records `twin_of` and
`init_seed`. ESM-2 registry names build their twin from the published config alone
(`esm2.esm2_config`), without the trained weights.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from plmdepth.model import ProteinLM, state_dict_checksum

TWIN = re.compile(r"^(?P<base>.+)@random(?P<seed>\d+)$")
MAX_UNCHANGED = 0.01  # share of parameter elements a twin may keep from the trained model


def parse_twin(argument: str) -> tuple[str, int | None]:
    """(`base`, seed) of a twin's argument `base@random<seed>`; (argument, None) otherwise."""
    match = TWIN.match(str(argument))
    return (match["base"], int(match["seed"])) if match else (str(argument), None)


def twin_name(name: str, seed: int) -> str:
    """A twin's name in tables: "antiberty (untrained, seed 1)"."""
    return f"{name} (untrained, seed {seed})"


def _reinitialise(lm: ProteinLM, seed: int) -> None:
    network = lm.network
    torch.manual_seed(seed)
    from transformers import PreTrainedModel

    if isinstance(network, PreTrainedModel):
        fresh = type(network)(network.config)
        network.load_state_dict(fresh.to(next(network.parameters()).dtype).state_dict())
        return
    with torch.no_grad():
        if getattr(lm, "initialise", None) is not None:
            lm.initialise(network)
        else:
            for module in network.modules():
                if isinstance(module, nn.Module) and hasattr(module, "reset_parameters") and module is not network:
                    module.reset_parameters()


def untrained_twin(lm: ProteinLM, seed: int) -> ProteinLM:
    """`lm` re-initialised (seeded) by its architecture's initialiser, renamed as its twin; refused
    when the initialiser leaves trained weights in place."""
    before = {name: p.detach().clone() for name, p in lm.network.named_parameters()}
    _reinitialise(lm, seed)
    after = {name: p.detach() for name, p in lm.network.named_parameters()}
    varied = {name: value for name, value in before.items() if after[name].numel() > 1 and
              not bool((after[name] == after[name].reshape(-1)[0]).all())}  # not set to one constant
    unchanged = {name: int((after[name] == value).sum()) for name, value in varied.items()}
    total = sum(v.numel() for v in varied.values())
    if sum(unchanged.values()) > MAX_UNCHANGED * total:
        kept = ", ".join(f"{n} ({k} of {before[n].numel()})" for n, k in unchanged.items() if k)
        raise ValueError(f"re-initialising {lm.info.name} left trained weights in place: {kept}. "
                         "Its family needs an initialiser (`lm.initialise`) for these.")
    suffix = lm.info.checksum.split(" ", 1)[1:]  # what else the checksum covers (ProteinMPNN's structures)
    lm.info.checksum = " ".join([state_dict_checksum(lm.network), *suffix])
    return named_twin(lm, seed, f"{type(lm.network).__name__} re-initialised")


def named_twin(lm: ProteinLM, seed: int, how: str) -> ProteinLM:
    """`lm`, an initialised network, named and recorded as the untrained twin (seed `seed`) of the
    model it was built as."""
    info = lm.info
    info.twin_of, info.init_seed = info.name, seed
    info.source = f"untrained twin of {info.source}: {how}, seed {seed}"
    info.name = twin_name(info.name, seed)
    return lm
