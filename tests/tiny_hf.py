"""Tiny random checkpoints of every architecture the generic adapter covers, saved as a user's
model would be (`save_pretrained`, with the model's own tokenizer next to it).

`write(model_type, folder)` writes one; `TINY` lists them. Each tokenizer is of the kind the
architecture's protein models use: character-level vocabularies with a post-processor for the
encoders, ProtBert's space-separated WordPiece for BERT, ESM's and ESM C's own tokenizers, and
trained sentence-piece / byte-level byte-pair vocabularies for the decoders (tokens that hold
several residues).
"""

from __future__ import annotations

from pathlib import Path

import torch

from plmdepth.tokens import CANONICAL

SIZE = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
EXTRA = "XBUZO"  # rare letters in the character vocabularies


def _sample_texts(n: int = 200) -> list[str]:
    from plmdepth.fasta import read_fasta

    root = Path(__file__).resolve().parents[1]
    return [r.sequence for r in read_fasta(root / "data" / "proteome_sample.fasta")[:n]]


def char_tokenizer(specials: tuple[str, ...], frame: tuple[str, str] | None, pad: str, mask: str | None,
                   unk: str, bos: str | None = None, eos: str | None = None):
    """A character-level fast tokenizer: each letter a token, `frame` the tokens around a sequence."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + tuple(CANONICAL) + tuple(EXTRA))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    if frame:
        first, last = frame
        tok.post_processor = processors.TemplateProcessing(
            single=f"{first} $A {last}", special_tokens=[(first, vocab[first]), (last, vocab[last])])
    kwargs = {k: v for k, v in dict(pad_token=pad, mask_token=mask, unk_token=unk, bos_token=bos,
                                    eos_token=eos).items() if v}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def protbert_tokenizer(folder: Path):
    """ProtBert's tokenizer: BERT WordPiece over single letters, residues separated by spaces."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(CANONICAL) + list(EXTRA)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False)


def esm_tokenizer(folder: Path):
    from transformers import EsmTokenizer

    from plmdepth.models.architectures import ESM_TOKENS

    (folder / "vocab.txt").write_text("\n".join(ESM_TOKENS) + "\n")
    return EsmTokenizer(str(folder / "vocab.txt"))


def trained_bpe(kind: str, vocab_size: int = 300):
    """A byte-pair vocabulary trained on the committed proteome sample: "sentencepiece" (▁ word
    marks, byte fallback off, as Llama-family protein models) or "bytelevel" (GPT-2 / NeoX)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if kind == "sentencepiece":
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = list(CANONICAL + EXTRA) + ["\u2581"]
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(_sample_texts(), trainer)
    if kind == "sentencepiece":
        from tokenizers import processors

        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def _bert_like():
    return char_tokenizer(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), ("[CLS]", "[SEP]"), "[PAD]", "[MASK]",
                          "[UNK]")


def _roberta_like():
    return char_tokenizer(("<s>", "<pad>", "</s>", "<unk>", "<mask>"), ("<s>", "</s>"), "<pad>", "<mask>", "<unk>",
                          bos="<s>", eos="</s>")


def _gpt_like():
    return char_tokenizer(("<|pad|>", "<|unk|>", "<|bos|>", "<|eos|>"), None, "<|pad|>", None, "<|unk|>",
                          bos="<|bos|>", eos="<|eos|>")


def _esmc(folder: Path):
    from transformers import EsmcTokenizer

    return EsmcTokenizer()


# model_type -> (transformers config and model classes, config overrides, tokenizer factory(folder))
TINY = {
    "bert": ("BertConfig", "BertForMaskedLM", {}, protbert_tokenizer),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", {}, lambda f: _roberta_like()),
    "roformer": ("RoFormerConfig", "RoFormerForMaskedLM", {"embedding_size": 32}, lambda f: _bert_like()),
    "electra": ("ElectraConfig", "ElectraForMaskedLM", {"embedding_size": 16}, lambda f: _bert_like()),
    "esm": ("EsmConfig", "EsmForMaskedLM", {"position_embedding_type": "rotary", "token_dropout": True,
                                            "mask_token_id": 32, "pad_token_id": 1, "emb_layer_norm_before": False},
            esm_tokenizer),
    "esmc": ("EsmcConfig", "EsmcForMaskedLM", {"num_key_value_heads": 4, "head_dim": 8}, _esmc),
    "modernbert": ("ModernBertConfig", "ModernBertForMaskedLM", {"local_attention": 8, "global_attn_every_n_layers": 2},
                   lambda f: _bert_like()),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {}, lambda f: _gpt_like()),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"num_key_value_heads": 2}, lambda f: trained_bpe("sentencepiece")),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"num_key_value_heads": 2, "sliding_window": 16},
                lambda f: trained_bpe("sentencepiece")),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"num_key_value_heads": 2}, lambda f: trained_bpe("bytelevel")),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {"rotary_pct": 0.5}, lambda f: trained_bpe("bytelevel")),
}
ARCHITECTURES = tuple(TINY)


def write(model_type: str, folder: Path, seed: int = 0, positions: int = 128) -> Path:
    """A tiny random `model_type` checkpoint with its tokenizer, saved in `folder` (`positions`:
    its context in tokens)."""
    import transformers

    config_name, model_name, overrides, make_tokenizer = TINY[model_type]
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder)
    ids = {k: getattr(tokenizer, f"{k}_token_id") for k in ("pad", "bos", "eos", "mask")}
    fields = {"vocab_size": len(tokenizer), "max_position_embeddings": positions, "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0, "initializer_range": 0.1, **SIZE,
              **{f"{k}_token_id": v for k, v in ids.items() if v is not None and k != "mask"}, **overrides}
    config = getattr(transformers, config_name)(**fields)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, so the comparisons check them too
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hub_cache(root: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> Path:
    """A Hugging Face hub cache under `root` holding `folder`'s files (subfolders too) as repository
    `repo_id` (the layout huggingface_hub reads offline: models--org--name/{refs/main, snapshots/<commit>/})."""
    import shutil

    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root
