"""The one interface every model is seen through (SPEC §1).

A `ProteinLM` wraps a language model network (a transformers model or a torch port) and
exposes its anatomy:

    batch = lm.tokenize(ids, sequences, masked=...)
    h = lm.embed(batch)                  # h_0, exactly as the model's own forward computes it
    for l in range(lm.n_layers):
        h = lm.block(l, h, batch)        # h_{l+1} = block_l(h_l)
    logits = lm.readout(h)               # final norm (if any) + the full LM head

`embed` runs the model's own forward pass up to the entrance of block 0 and stops there, so
the embeddings (ESM-2's token-dropout rescaling included) and the arguments every block
receives (attention mask, rotary tables) are the model's own, not a re-implementation.
`block` calls the model's own layer module with those arguments. Layer-keyed quantities
use one convention everywhere: 0 = embeddings, l = after block l, L = last block.

A model that needs inputs besides the token ids (a structure-conditioned model's
coordinates) is given `inputs_for(ids, sequences) -> dict`: `tokenize` stores its result in
`batch.model_inputs`, and `embed` and `forward` pass those to the model's own forward as
keyword arguments, next to `input_ids` and `attention_mask`.

The wrapper holds no loading code (see `plmdepth.models`) and never mutates the model.
`state_dict_checksum` and `n_params` are what every loader reports in `ModelInfo`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from plmdepth import cpu_math
from plmdepth.tokens import Alphabet, Batch, encode

OBJECTIVES = ("masked", "autoregressive", "diffusion")
MODALITIES = ("sequence", "sequence+structure")


class _ReachedBlock0(Exception):
    """Raised by the pre-hook on block 0 to stop the model's forward pass there."""


def widened(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 at least: a float64 tensor stays float64 (a float32 one is returned as it is)."""
    return x if x.dtype == torch.float64 else x.float()


def state_dict_checksum(module: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a module's state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def n_params(module: nn.Module) -> int:
    """Number of parameters, each shared (tied) tensor counted once."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@dataclass(kw_only=True)
class ModelInfo:
    """What a model is: written to run.json and to the book's model table."""

    name: str
    source: str
    family: str
    objective: str
    modality: str
    n_layers: int
    d_model: int
    n_params: int
    licence: str
    checksum: str
    norm: str  # "pre-LN" or "post-LN"
    twin_of: str | None = None  # an untrained twin's trained model (models/untrained.py), else None
    init_seed: int | None = None  # and its initialisation seed


class FirstOutputs(nn.Module):
    """The first `n` outputs of a head: the ones that belong to tokens, where a head scores more
    outputs than the vocabulary has (ESM C: 64 outputs for 33 tokens)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., : self.n]


class ProteinLM(nn.Module):
    """A protein language model seen as embeddings, a stack of blocks and a readout.

    `layers` are the model's own block modules, `final_norm` the norm applied after the last
    block (None for post-LN models such as BERT), `head` the full language-model head.
    `forward_kwargs` are passed to the model's own forward (e.g. ``use_cache=False``).
    `first_lens_layer` is the first layer the readout can read (1 when the embeddings are
    narrower than the hidden state, as in UniRep); measurements start there.
    `inputs_for(ids, sequences)`, if given, returns the model's extra forward inputs for a
    batch (tensors with the batch's rows and token positions); it may raise ValueError with
    one sentence saying what to do (e.g. a sequence with no structure).
    `initialise(network)`, if set, is the architecture's own initialiser, which an untrained
    twin of a network other than a transformers one uses (`models.untrained`).
    `per_layer_arguments`: the model's forward gives each block its own arguments (ModernBERT's
    alternating global and local attention masks), so `embed` records them block by block.
    `vocabulary_outputs`: where the network's head scores more outputs than the vocabulary has
    tokens, the number it has; `forward` then returns those first outputs only (and `head` must
    end in `FirstOutputs` of the same number).
    """

    def __init__(
        self,
        network: nn.Module,
        layers: nn.ModuleList,
        final_norm: nn.Module | None,
        head: nn.Module,
        alphabet: Alphabet,
        info: ModelInfo,
        max_residues: int,
        forward_kwargs: dict | None = None,
        sublayers: dict | None = None,
        first_lens_layer: int = 0,
        inputs_for: Callable[[list[str], list[str]], dict] | None = None,
        per_layer_arguments: bool = False,
        vocabulary_outputs: int | None = None,
    ):
        super().__init__()
        if info.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {info.objective!r}")
        if info.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {info.modality!r}")
        self.network = network.eval()
        self.spec = None  # the resolved model (plmdepth.models.ModelSpec) when loaded through load_model
        self.layers = layers
        self.final_norm = final_norm
        self.head = head
        self.alphabet = alphabet
        self.info = info
        self.max_residues = max_residues
        self.forward_kwargs = dict(forward_kwargs or {})
        self.sublayers = dict(sublayers or {})
        self.first_lens_layer = first_lens_layer
        self.inputs_for = inputs_for
        self.per_layer_arguments = per_layer_arguments
        self.vocabulary_outputs = vocabulary_outputs
        self.initialise = None
        cpu_math.initialise()  # before any forward pass: see plmdepth/cpu_math.py

    # ----------------------------------------------------------------- metadata
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def objective(self) -> str:
        return self.info.objective

    @property
    def modality(self) -> str:
        return self.info.modality

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    # ------------------------------------------------------------------ anatomy
    def tokenize(
        self,
        ids: Sequence[str],
        sequences: Sequence[str],
        masked: Sequence[Sequence[int]] | None = None,
    ) -> Batch:
        """Token ids of `sequences`, with `masked` residue positions set to the mask token."""
        too_long = [i for i, s in zip(ids, sequences) if len(s) > self.max_residues]
        if too_long:
            raise ValueError(
                f"sequence '{too_long[0]}' is longer than this model's context of "
                f"{self.max_residues} residues; crop it (--too-long crop; too_long='crop' from Python) "
                "or remove it."
            )
        autoregressive = self.objective == "autoregressive"
        if hasattr(self.alphabet, "encode"):  # a vocabulary its tokenizer cuts (tokens.TokenizedAlphabet)
            batch = self.alphabet.encode(ids, sequences, masked, autoregressive=autoregressive)
        else:
            batch = encode(self.alphabet, ids, sequences, masked, autoregressive=autoregressive)
        if self.inputs_for is not None:
            batch.model_inputs = self.inputs_for(list(ids), list(sequences))
        return batch.to(self.device)

    def embed(self, batch: Batch) -> torch.Tensor:
        """h_0: the residual stream entering block 0, from the model's own forward pass.

        The arguments the forward passes to block 0 are recorded in `batch.layer_context`; with
        `per_layer_arguments`, those of every block (`layer_context["layers"]`): each block is
        then stood in for by a recorder that returns its input, and the pass stops at the last."""
        captured: list = []
        last = 0 if not self.per_layer_arguments else self.n_layers - 1

        def record(layer: int):
            def stand_in(*args, **kwargs):
                captured.append((args, kwargs))
                if layer == last:
                    raise _ReachedBlock0
                return args[0] if args else kwargs["hidden_states"]
            return stand_in

        handle = None
        if self.per_layer_arguments:
            for layer, module in enumerate(self.layers):
                module.forward = record(layer)  # an instance attribute, removed below
        else:
            handle = self.layers[0].register_forward_pre_hook(
                lambda module, args, kwargs: record(0)(*args, **kwargs), with_kwargs=True)
        try:
            self.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **batch.model_inputs,
                          **self.forward_kwargs)
        except _ReachedBlock0:
            pass
        finally:
            if handle is not None:
                handle.remove()
            if self.per_layer_arguments:
                for module in self.layers:
                    del module.forward
        if len(captured) != last + 1:
            raise RuntimeError("the model's forward pass never reached block 0")
        contexts = [{"args": tuple(args[1:]), "kwargs": {k: v for k, v in kwargs.items() if k != "hidden_states"}}
                    for args, kwargs in captured]
        batch.layer_context = dict(contexts[0])
        if self.per_layer_arguments:
            batch.layer_context["layers"] = contexts
        args, kwargs = captured[0]
        return args[0] if args else kwargs["hidden_states"]

    def block(self, layer: int, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        """h_{l+1} = block_l(h_l), with the arguments the model's own forward passes."""
        if not batch.layer_context:
            raise RuntimeError("call embed(batch) before block(): it records the blocks' arguments")
        context = batch.layer_context["layers"][layer] if "layers" in batch.layer_context else batch.layer_context
        kwargs = {k: v for k, v in context["kwargs"].items() if k != "hidden_states"}
        out = self.layers[layer](h, *context["args"], **kwargs)
        return out[0] if isinstance(out, tuple) else out

    def block_without(self, layer: int, h: torch.Tensor, batch: Batch, part: str) -> torch.Tensor:
        """h_{l+1} with the update of sublayer `part` ("attention" or "mlp") of block `layer` set to
        zero: the module that computes that update (`sublayers[part]`) outputs zeros, and the block
        runs as it does otherwise (its norms, the other sublayer, its residual additions)."""
        if part not in ("attention", "mlp"):
            raise ValueError(f"part must be 'attention' or 'mlp', not {part!r}")
        if part not in self.sublayers:
            raise ValueError(f"{self.info.name}: its blocks' sublayers are not known (no layout for this "
                             "architecture), so its attention or MLP alone cannot be skipped.")
        module = self.layers[layer].get_submodule(self.sublayers[part])

        def zero(m, args, out):
            if isinstance(out, tuple):
                return (torch.zeros_like(out[0]), *out[1:])
            return torch.zeros_like(out)

        handle = module.register_forward_hook(zero)
        try:
            return self.block(layer, h, batch)
        finally:
            handle.remove()

    def block_parts(self, layer: int, h: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Run block `layer` once and observe its sublayers.

        Returns `out` (h_{l+1}) and, where the architecture exposes them, the attention update
        `attention` with the stream it is added to (`attention_base`) and the MLP update `mlp`
        with its base `mlp_base`. Pre-LN blocks (`sublayers["mid"]` names the module whose
        input is h + a): a = mid - h, m = out - mid. Post-LN blocks (`sublayers["attention"]`,
        `["mlp"]` name the dense layers whose outputs are added before the norm): the updates
        are those pre-norm outputs and the bases the pre-norm streams they are added to.
        Parallel blocks (GPT-J style, ProGen2: out = h + attn(ln(h)) + mlp(ln(h));
        `["attention"]`, `["mlp"]` name the two sublayers): both updates are added to h, so both
        bases are h.
        """
        block = self.layers[layer]
        seen: dict[str, torch.Tensor] = {}
        handles = []
        kind = self.sublayers.get("kind")
        try:
            if kind == "pre-LN":
                mid = block.get_submodule(self.sublayers["mid"])
                handles.append(mid.register_forward_pre_hook(lambda m, args: seen.__setitem__("mid", args[0])))
            elif kind in ("post-LN", "parallel"):
                for part in ("attention", "mlp"):
                    module = block.get_submodule(self.sublayers[part])
                    handles.append(module.register_forward_hook(
                        lambda m, args, out, part=part: seen.__setitem__(part, out[0] if isinstance(out, tuple)
                                                                         else out)))
            if kind == "post-LN":
                base = block.get_submodule(self.sublayers["mlp_base_of"])
                handles.append(base.register_forward_pre_hook(lambda m, args: seen.__setitem__("mlp_base", args[1])))
            out = self.block(layer, h, batch)
        finally:
            for handle in handles:
                handle.remove()
        parts = {"out": out}
        if kind == "pre-LN":
            parts.update(attention=seen["mid"] - h, attention_base=h, mlp=out - seen["mid"], mlp_base=seen["mid"])
        elif kind == "post-LN":
            parts.update(attention=seen["attention"], attention_base=h, mlp=seen["mlp"], mlp_base=seen["mlp_base"])
        elif kind == "parallel":
            parts.update(attention=seen["attention"], attention_base=h, mlp=seen["mlp"], mlp_base=h)
        return parts

    def block_weights(self) -> list[int]:
        """Per block, the elements of its weight matrices (parameters with two or more dimensions):
        its multiply-adds per token, leaving out attention's term that grows with sequence length."""
        return [sum(p.numel() for p in block.parameters() if p.dim() >= 2) for block in self.layers]

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from a residual stream: the final norm (if any), then the full LM head."""
        if self.final_norm is not None:
            h = self.final_norm(h)
        return self.head(h)

    def hidden_states(self, batch: Batch) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (l, h_l) for l = 0..L, one block at a time (nothing is kept)."""
        h = self.embed(batch)
        yield 0, h
        for layer in range(self.n_layers):
            h = self.block(layer, h, batch)
            yield layer + 1, h

    def forward(self, batch: Batch) -> torch.Tensor:
        """The model's own logits (its own forward pass, untouched)."""
        out = self.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **batch.model_inputs,
                            **self.forward_kwargs)
        return out.logits if self.vocabulary_outputs is None else out.logits[..., : self.vocabulary_outputs]
