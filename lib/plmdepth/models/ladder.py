"""The depth ladder: masked LMs of ESM-2's architecture trained here, one width, several depths.

Published families change width, heads, data and training length together with depth, so they
cannot say what depth alone does. Each rung of the ladder is transformers' `EsmForMaskedLM` with
ESM-2's config (pre-LN, rotary positions, token dropout, 4x MLP; `esm2.esm2_config`) at width
`Recipe.width`, trained by one recipe on one corpus; only `num_hidden_layers` differs.

The recipe (`Recipe`), for every rung alike:
- the corpus: abnativ's VH, VL and VHH chains less the book's measured sets and a held-out split
  (`data/make_ladder_corpus.py`); the batches are its first chains in its seeded order, so every
  rung sees the same chains in the same order;
- the token budget: the same number of residues per rung (`tokens`), so the rungs differ in
  compute (proportional to depth) but not in data exposure;
- 15% of each chain's residues are scoring targets, 80% of them replaced by <mask>, 10% by a random
  amino acid, 10% kept (BERT's and ESM-2's rule); the masks are seeded by step, the same for every rung;
- AdamW with linear warm-up and linear decay to zero, gradient clipping, float32 master weights;
  the matrix products in bfloat16 (autocast) where the processor has matrix units for it
  (`fast_bfloat16`), in float32 otherwise.

Each rung is saved with `save_pretrained` in float16 under `data/ladder/<name>/` and loads through
`esm2.load_esm2`, like any ESM-2 folder. `data/ladder/manifest.json` records the recipe, the
command, the corpus checksum, each rung's loss at every step, its wall time and held-out loss, and
the sha256 of every file; `load_rung` refuses weights that differ from it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from plmdepth import paths
from plmdepth.weights import sha256_of
from plmdepth.models.hub import ModelLoadError

LADDER_DIR = "data/ladder"
FAMILY = "ESM-2 ladder"
LICENCE = "CC BY-NC-SA 4.0 (trained on abnativ's chains)"
MANIFEST = "manifest.json"
AMINO_ACIDS = "LAGVSERTIDPKQNFYMHWC"  # ESM's alphabet order of the 20 canonical residues (ids 4..23)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a rung except its depth."""

    width: int = 128
    heads: int = 8
    depths: tuple = (2, 4, 8, 12, 16)
    batch_size: int = 32  # chains per step
    tokens: int = 1_500_000  # residues seen per rung (every rung the same)
    lr: float = 1e-3
    warmup: float = 0.05  # share of the steps
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.98)
    clip: float = 1.0
    mask_fraction: float = 0.15
    seed: int = 0  # of the initialisation and of the masks
    heldout_chains: int = 500  # the first chains of heldout.fasta, for the held-out loss
    eval_seed: int = 1  # of the held-out masks

    def name(self, depth: int) -> str:
        return f"ladder-d{self.width}-L{depth}"


def ladder_dir() -> Path:
    return paths.project_root() / LADDER_DIR


def read_fasta(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line and not line.startswith(">")]


def fast_bfloat16(device: torch.device) -> bool:
    """bfloat16 matrix products pay off: a CUDA device, or a CPU with AMX (Linux's `amx_bf16` flag)."""
    if device.type == "cuda":
        return True
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def rung_config(recipe: Recipe, depth: int):
    from plmdepth.models.esm2 import esm2_config

    return esm2_config("8M", hidden_size=recipe.width, num_hidden_layers=depth, num_attention_heads=recipe.heads,
                       intermediate_size=4 * recipe.width)


def encode(chains: list[str], alphabet) -> tuple[torch.Tensor, torch.Tensor]:
    """<cls> chain <eos>, padded: (ids, attention mask)."""
    pad, first, last = (alphabet.id(t) for t in (alphabet.pad, *alphabet.prefix, *alphabet.suffix))
    ids = torch.full((len(chains), max(map(len, chains)) + 2), pad, dtype=torch.long)
    for row, chain in enumerate(chains):
        ids[row, :len(chain) + 2] = torch.tensor([first, *map(alphabet.residue_id, chain), last])
    return ids, (ids != pad).long()


def masked(ids: torch.Tensor, attention: torch.Tensor, recipe: Recipe, seed: int, alphabet):
    """(inputs, labels): `mask_fraction` of every chain's residues chosen as targets (at least one),
    80% of them replaced by <mask>, 10% by a random amino acid, 10% kept; labels -100 elsewhere."""
    g = torch.Generator().manual_seed(seed)
    residue = attention.bool().clone()
    residue[:, 0] = False
    residue[torch.arange(len(ids)), attention.sum(1) - 1] = False
    scores = torch.rand(ids.shape, generator=g).masked_fill(~residue, 2.0)
    counts = (residue.sum(1) * recipe.mask_fraction).round().clamp(min=1).long()
    order = scores.argsort(1)
    target = torch.zeros_like(residue)
    for row in range(len(ids)):
        target[row, order[row, :counts[row]]] = True
    labels = ids.masked_fill(~target, -100)
    action = torch.rand(ids.shape, generator=g)
    random_aa = torch.tensor([alphabet.residue_id(a) for a in AMINO_ACIDS])[
        torch.randint(len(AMINO_ACIDS), ids.shape, generator=g)]
    inputs = ids.clone()
    inputs[target & (action < 0.8)] = alphabet.id(alphabet.mask)
    swap = target & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_aa[swap]
    return inputs, labels


def batches(chains: list[str], recipe: Recipe) -> list[list[str]]:
    """The training batches: consecutive chains of the corpus until at least `tokens` residues are
    reached, starting over in the same order when a budget exceeds the corpus (a larger ladder)."""
    if not chains:
        raise ValueError("the corpus holds no chains")
    out, seen, start = [], 0, 0
    while seen < recipe.tokens:
        batch = [chains[(start + i) % len(chains)] for i in range(recipe.batch_size)]
        out.append(batch)
        seen += sum(map(len, batch))
        start = (start + recipe.batch_size) % len(chains)
    return out


def learning_rate(step: int, steps: int, recipe: Recipe) -> float:
    warm = max(1, round(recipe.warmup * steps))
    return recipe.lr * (step + 1) / warm if step < warm else recipe.lr * max(0.0, (steps - step) / (steps - warm))


def parameters(recipe: Recipe, depth: int) -> int:
    """Parameters of a rung: 12 w^2 + 13 w per block, the embeddings, the final norm, the head (its
    decoder tied to the embeddings) and ESM's contact head (one weight per attention map, unused here)."""
    w, vocab = recipe.width, 33
    return depth * (12 * w * w + 13 * w) + vocab * w + 2 * w + (w * w + 3 * w + vocab) + depth * recipe.heads + 1


def matrix_parameters(model) -> int:
    """Parameters of the blocks (what the 6 N D estimate of training FLOPs counts)."""
    return sum(p.numel() for n, p in model.named_parameters() if ".layer." in n)


@dataclass
class Trained:
    model: object
    losses: list = field(default_factory=list)
    tokens: int = 0
    wall_s: float = 0.0
    precision: str = "float32"


def train(recipe: Recipe, depth: int, chains: list[str], steps: int | None = None,
          device: str = "cpu", progress: bool = True) -> Trained:
    """Train one rung by `recipe` on `chains` (the corpus in order); `steps` stops early (tests)."""
    from tqdm.auto import tqdm
    from transformers import EsmForMaskedLM

    from plmdepth.models.architectures import ESM_ALPHABET as alphabet

    device = torch.device(device)
    plan = batches(chains, recipe)
    total = len(plan)
    torch.manual_seed(recipe.seed)
    model = EsmForMaskedLM(rung_config(recipe, depth)).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=recipe.lr, betas=recipe.betas)
    bf16 = fast_bfloat16(device)
    out = Trained(model, precision="mixed-bfloat16" if bf16 else "float32")
    start = time.perf_counter()
    for step, batch in enumerate(tqdm(plan[:steps], desc=recipe.name(depth), disable=not progress)):
        ids, attention = encode(batch, alphabet)
        inputs, labels = masked(ids, attention, recipe, recipe.seed * 1_000_003 + step, alphabet)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, total, recipe)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=inputs.to(device), attention_mask=attention.to(device),
                         labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        opt.step()
        out.losses.append(round(float(loss.detach()), 6))
        out.tokens += sum(map(len, batch))
    out.wall_s = time.perf_counter() - start
    model.eval()
    return out


@torch.no_grad()
def heldout_loss(model, recipe: Recipe, chains: list[str], batch_size: int = 50) -> float:
    """Mean cross-entropy [nats] over the scoring targets of the first `heldout_chains` held-out chains,
    masked by `eval_seed` (the same targets for every rung), in float32."""
    from plmdepth.models.architectures import ESM_ALPHABET as alphabet

    chains = chains[:recipe.heldout_chains]
    total, count = 0.0, 0
    model = model.float().eval()
    for start in range(0, len(chains), batch_size):
        ids, attention = encode(chains[start:start + batch_size], alphabet)
        inputs, labels = masked(ids, attention, recipe, recipe.eval_seed * 1_000_003 + start, alphabet)
        logits = model(input_ids=inputs, attention_mask=attention).logits
        picked = labels != -100
        total += float(torch.nn.functional.cross_entropy(logits[picked], labels[picked], reduction="sum"))
        count += int(picked.sum())
    return total / count


def save_rung(trained: Trained, folder: Path) -> dict:
    """The rung in float16 with `save_pretrained`; the sha256 of every file written."""
    folder.mkdir(parents=True, exist_ok=True)
    trained.model.half().save_pretrained(folder, safe_serialization=True)
    trained.model.float()
    return {f.name: sha256_of(f) for f in sorted(folder.iterdir()) if f.is_file()}


def load_manifest(folder: Path | None = None) -> dict:
    path = (folder or ladder_dir()) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"the depth ladder has no {path}; train it: python scripts/train_ladder.py")
    return json.loads(path.read_text())


def rung_entry(name: str, folder: Path | None = None) -> dict:
    manifest = load_manifest(folder)
    rung = next((r for r in manifest["rungs"] if r["name"] == name), None)
    if rung is None:
        raise ModelLoadError(f"{name} is not a rung of the ladder in {folder or ladder_dir()}; its rungs are "
                             f"{', '.join(r['name'] for r in manifest['rungs'])}")
    return rung


def load_rung(name: str, device=None, dtype=None):
    """A committed rung as a `ProteinLM` (through the ESM-2 folder loader), after checking every file
    of its folder against the manifest's sha256."""
    from plmdepth.models.esm2 import load_esm2

    rung = rung_entry(name)
    folder = ladder_dir() / name
    for file, digest in rung["files"].items():
        if not (folder / file).is_file() or sha256_of(folder / file) != digest:
            raise ModelLoadError(f"{folder / file} is missing or differs from data/ladder/{MANIFEST}; restore it "
                                 f"(git checkout -- {LADDER_DIR}/{name}) or retrain: python scripts/train_ladder.py")
    lm = load_esm2(str(folder), name=name, device=device, dtype=dtype)
    lm.info.family, lm.info.licence = FAMILY, LICENCE
    lm.info.source = f"{LADDER_DIR}/{name} (this repository)"  # not this checkout's absolute path
    return lm


def train_ladder(recipe: Recipe, out: Path, command: str, device: str = "cpu") -> dict:
    """Train and save every rung of `recipe` under `out`, writing out/manifest.json after each rung
    (a rung already in it with this recipe is kept)."""
    corpus = out / "train.fasta"
    checksums = dict(line.split()[::-1] for line in (out / "corpus.sha256").read_text().splitlines())
    if not corpus.is_file() or sha256_of(corpus) != checksums["train.fasta"]:
        raise ModelLoadError(f"{corpus} is missing or differs from corpus.sha256; build it: "
                             "python data/make_ladder_corpus.py")
    chains, heldout = read_fasta(corpus), read_fasta(out / "heldout.fasta")
    path = out / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    shared = json.loads(json.dumps({k: v for k, v in asdict(recipe).items() if k != "depths"}))
    if manifest.get("recipe") != shared:  # another recipe: its rungs are replaced
        manifest = {"recipe": shared, "rungs": []}
    manifest.update(corpus=checksums, command=command, torch=torch.__version__, threads=torch.get_num_threads())
    done = {r["depth"] for r in manifest["rungs"]}
    for depth in recipe.depths:
        if depth in done:
            continue
        trained = train(recipe, depth, chains, device=device)
        name = recipe.name(depth)
        files = save_rung(trained, out / name)
        from transformers import EsmForMaskedLM

        saved = EsmForMaskedLM.from_pretrained(out / name, dtype=torch.float32)
        loss = heldout_loss(saved, recipe, heldout)
        n = matrix_parameters(saved)
        manifest["rungs"].append({
            "name": name, "depth": depth, "block_parameters": n, "steps": len(trained.losses),
            "tokens": trained.tokens, "wall_s": round(trained.wall_s, 1), "precision": trained.precision,
            "tflops": round(6 * n * trained.tokens / trained.wall_s / 1e12, 4),
            "heldout_loss": round(loss, 6), "heldout_perplexity": round(math.exp(loss), 4),
            "files": files, "losses": trained.losses})
        manifest["rungs"].sort(key=lambda r: r["depth"])
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"{name}: {trained.tokens} residues in {trained.wall_s:.0f} s; held-out loss {loss:.4f} "
              f"(perplexity {math.exp(loss):.3f})")
    return manifest
