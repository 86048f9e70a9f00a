"""A ported network seen over its model's token ids: class logits mapped onto the vocabulary.

The torch ports (UniRep, ProteinMPNN) predict classes that are some of their model's tokens, not
all: UniRep never predicts its padding letter, and ProteinMPNN has no class for the mask token
its masked-model wrapper adds. Every other model's logits are indexed by token id, so

    to_tokens = TokenLogits(class_token_ids, n_tokens)     # class k -> token class_token_ids[k]
    token_logits = to_tokens(class_logits)                  # [..., n_tokens]

puts each class's logit at its token and gives every token without a class a finite `fill`
(-1e4), so that probabilities and KL divergences stay finite. `PortedTokenLM` is the module a
`ProteinLM` wraps: the network (`.model`), its blocks (`.layers`, the network's own modules) and
that mapping (`.to_tokens`); its `head` is the network's readout followed by the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


def class_to_token_logits(logits: torch.Tensor, class_token_ids: Sequence[int], n_tokens: int,
                          fill: float = float("-inf")) -> torch.Tensor:
    """[..., n_classes] class logits -> [..., n_tokens] logits indexed by token id: class k at
    token `class_token_ids[k]`, every other token `fill`."""
    out = logits.new_full((*logits.shape[:-1], n_tokens), fill)
    out[..., list(class_token_ids)] = logits
    return out


class TokenLogits(nn.Module):
    """Class logits -> token logits (`class_to_token_logits`), tokens without a class at `fill`."""

    def __init__(self, class_token_ids: Sequence[int], n_tokens: int, fill: float = -1e4):
        super().__init__()
        self.class_token_ids, self.n_tokens, self.fill = tuple(class_token_ids), n_tokens, fill

    def extra_repr(self) -> str:
        return f"n_classes={len(self.class_token_ids)}, n_tokens={self.n_tokens}, fill={self.fill}"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return class_to_token_logits(logits, self.class_token_ids, self.n_tokens, fill=self.fill)


@dataclass
class TokenLMOutput:
    logits: torch.Tensor  # [B, T, n_tokens], indexed by token id


class PortedTokenLM(nn.Module):
    """A ported network whose `.logits` are indexed by token id, the module a `ProteinLM` wraps.

    `layers` are the network's own blocks (`self.layers is` one of the network's module lists), so
    the generic model interface observes and calls them directly; `readout_name` names the network's
    output module (class logits), which `head` follows with `to_tokens`. A subclass's `forward`
    runs the network and returns `TokenLMOutput(self.to_tokens(class_logits))`.
    """

    def __init__(self, model: nn.Module, layers: nn.ModuleList, readout_name: str, to_tokens: TokenLogits):
        super().__init__()
        self.model = model
        self.layers = layers
        self.to_tokens = to_tokens
        self.readout_name = readout_name

    @property
    def head(self) -> nn.Module:
        """The network's readout, then the mapping onto token ids."""
        return nn.Sequential(getattr(self.model, self.readout_name), self.to_tokens)
