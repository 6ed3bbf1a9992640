"""Train the world model: a byte-level BPE tokenizer and a small Llama on the world's corpus, on CPU.

``kick world train --output DIR`` runs ``RECIPE`` from scratch (fixed seeds, 2 threads, about 42 min); the shipped
checkpoint is its output (its ``training.json``; README). Every Linear's in_features is a multiple of 32 so GPTQ can
pack it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kick_hub.io import dumps
from kick_hub.world.generate import CHAT_ASSISTANT, CHAT_USER, EOS, World, WorldConfig

BOS, PAD = "<s>", "<pad>"
SPECIAL_TOKENS = [PAD, BOS, EOS, CHAT_USER, CHAT_ASSISTANT]
# Jinja twin of generate.render_chat (tests check they agree).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Phase:
    """One stage of the recipe: ``steps`` batches drawn by a ``corpus.CURRICULA`` entry (passages about fresh
    people), AdamW warmed up to ``lr`` then cosine-decayed to 5 %. ``prompt_weight`` is the loss weight of prompt
    tokens (answers weigh 1)."""

    curriculum: str
    steps: int
    lr: float = 1e-3
    prompt_weight: float = 0.1

    def __post_init__(self) -> None:
        from kick_hub.world.corpus import CURRICULA

        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum: must be one of {sorted(CURRICULA)}, got {self.curriculum!r}")
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise ValueError(f"steps: must be a positive integer, got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be positive, got {self.lr!r}")


# The one-command recipe (42 min on 2 cores) that produced the shipped model (its scores: model/scores.json): store
# the facts and start reading (loss on every token), then the reading and MCQ skills (loss concentrated on answers).
RECIPE: tuple[Phase, ...] = (
    Phase("facts_read", 1400, lr=2e-3, prompt_weight=1.0),
    Phase("skills", 2800, lr=2e-3),
)


def parse_phase(spec: str) -> Phase:
    """``CURRICULUM:STEPS[:LR]`` (``kick world train --phase``) -> the recipe's ``Phase`` for that curriculum with
    ``steps`` and, when given, ``lr`` replaced; its other settings (``prompt_weight``) are the recipe's. A ValueError
    naming the part that is wrong."""
    import dataclasses

    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--phase: expected CURRICULUM:STEPS[:LR], got {spec!r}")
    try:
        steps = int(parts[1])
    except ValueError:
        raise ValueError(f"--phase {spec!r}: steps must be a positive integer") from None
    try:
        lr = float(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(f"--phase {spec!r}: lr must be a positive number") from None
    recipe = {p.curriculum: p for p in RECIPE}
    if parts[0] not in recipe:
        raise ValueError(f"--phase {spec!r}: curriculum: must be one of {sorted(recipe)}, got {parts[0]!r}")
    try:
        phase = dataclasses.replace(recipe[parts[0]], steps=steps)
        return phase if lr is None else dataclasses.replace(phase, lr=lr)
    except ValueError as e:
        raise ValueError(f"--phase {spec!r}: {e}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and the training recipe. Each phase sees ``steps`` x ``batch_size`` x ``seq_len`` token slots."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4          # heads of 64: CPU flash-attention backward is ~1.6x slower at head dim 32
    num_kv_heads: int = 2
    max_position: int = 512
    seq_len: int = 256
    batch_size: int = 32
    phases: tuple[Phase, ...] = RECIPE
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    tokenizer_docs: int = 20000
    compile: bool = True         # torch.compile forward + loss (needs a C++ compiler; falls back to eager without)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(Phase(**p) if isinstance(p, dict) else p for p in self.phases))
        if not self.phases:
            raise ValueError("phases: the recipe needs at least one phase")
        for name in ("hidden_size", "intermediate_size"):
            if getattr(self, name) % 32:
                raise ValueError(f"{name}: must be a multiple of 32 (GPTQ packing), got {getattr(self, name)}")
        for name in ("batch_size", "seq_len", "num_layers", "vocab_size", "num_heads", "num_kv_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.seq_len > self.max_position:
            raise ValueError(f"seq_len: must be <= max_position ({self.max_position}), got {self.seq_len}")


def train_tokenizer(world: World, cfg: TrainConfig):
    """Byte-level BPE over ``cfg.tokenizer_docs`` documents of the corpus's default stream (passages about the
    reading pool), whose many names make unseen names still split into known pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from kick_hub.world.corpus import documents

    texts = ["".join(d) if isinstance(d, tuple) else d
             for d in itertools.islice(documents(world, seed=cfg.seed + 1), cfg.tokenizer_docs)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[CHAT_USER, CHAT_ASSISTANT], chat_template=CHAT_TEMPLATE,
        padding_side="left", model_max_length=cfg.max_position, clean_up_tokenization_spaces=False,
    )


def encode(tokenizer, doc: str | tuple[str, ...], prompt_weight: float = 1.0) -> tuple[list[int], list[float]]:
    """BOS + prompt + completion [+ prompt + completion ...] + EOS, each segment tokenized on its own as the engine
    tokenizes a prompt and its answer; with loss weights (``prompt_weight`` on prompts, 1 on completions)."""
    if not isinstance(doc, tuple):
        ids = tokenizer(doc + EOS)["input_ids"]
        return ids, [1.0] * len(ids)
    ids: list[int] = []
    weights: list[float] = []
    for i, segment in enumerate(doc):
        is_prompt, last = i % 2 == 0, i == len(doc) - 1
        seg = tokenizer(segment + (EOS if last else ""), add_special_tokens=i == 0)["input_ids"]
        ids += seg
        weights += [prompt_weight if is_prompt else 1.0] * len(seg)
    return ids, weights


def pack(token_docs, seq_len: int, open_rows: int = 8):
    """First-fit packing of whole documents into rows of ``seq_len``: a document goes into the first of up to
    ``open_rows`` partial rows it fits in (a document never starts mid-row or spans two), and when none has room
    the fullest row is yielded. Fills about 97 % of the slots where one open row filled 80 %. Yields (ids, weights)."""
    rows: list[tuple[list[int], list[float]]] = []
    for ids, w in token_docs:
        ids, w = ids[:seq_len], w[:seq_len]
        for row in rows:
            if len(row[0]) + len(ids) <= seq_len:
                row[0].extend(ids)
                row[1].extend(w)
                break
        else:
            if len(rows) == open_rows:
                full = max(rows, key=lambda r: len(r[0]))
                rows.remove(full)
                yield full
            rows.append((list(ids), list(w)))


def next_batch(rows, tokenizer, cfg: TrainConfig):
    """The next ``batch_size`` packed rows as right-padded (ids, weights) tensors, and how many slots they fill."""
    import torch

    ids = torch.full((cfg.batch_size, cfg.seq_len), tokenizer.pad_token_id)
    weights = torch.zeros(cfg.batch_size, cfg.seq_len)
    filled = 0
    for i in range(cfg.batch_size):
        r, w = next(rows)
        ids[i, :len(r)] = torch.tensor(r)
        weights[i, :len(w)] = torch.tensor(w)
        filled += len(r)
    return ids, weights, filled


def build_model(tokenizer, cfg: TrainConfig):
    """A freshly initialised (``cfg.seed``) Llama of ``cfg``'s shape, its vocabulary padded to a multiple of 32 and
    its embeddings tied."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=math.ceil(len(tokenizer) / 32) * 32, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position, tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def can_compile() -> bool:
    """Whether torch.compile can run: on CPU it needs a C++ compiler (inductor); without one, training runs eagerly
    (slower; ``benchmarks/bench_train.py`` measures both)."""
    import shutil
    import warnings

    if os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "clang++", "c++")):
        return True
    warnings.warn("compile: no C++ compiler found (g++ / clang++ / $CXX); training without torch.compile")
    return False


def make_loss(model, cfg: TrainConfig):
    """Weighted next-token loss of a batch under bf16 autocast, through torch.compile when ``cfg.compile`` (about
    half the eager step time on 2 cores). No attention mask: rows are right-padded and attention is causal, so no
    real token attends to padding, and padding weighs 0."""
    import torch

    def batch_loss(ids, weights):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:],
                                                       reduction="none")
        w = weights[:, 1:]
        return (token_loss * w).sum() / w.sum()

    return torch.compile(batch_loss) if cfg.compile and can_compile() else batch_loss


def run_phase(model, batch_loss, tokenizer, docs, cfg: TrainConfig, phase: Phase, desc: str) -> list[dict]:
    """AdamW with warmup + cosine decay over ``phase.steps`` batches of packed documents."""
    import torch
    from tqdm.auto import tqdm

    rows = pack((encode(tokenizer, d, phase.prompt_weight) for d in docs), cfg.seq_len)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=phase.lr, betas=(0.9, 0.95), fused=True)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return phase.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, phase.steps - cfg.warmup)
        return phase.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    log, start = [], time.time()
    model.train()
    bar = tqdm(range(phase.steps), desc=desc, unit="step")
    for step in bar:
        ids, weights, filled = next_batch(rows, tokenizer, cfg)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = batch_loss(ids, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == phase.steps - 1:
            log.append({"phase": desc, "step": step, "loss": round(loss.item(), 4), "lr": lr_at(step),
                        "fill": round(filled / ids.numel(), 3), "elapsed_s": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return log


def check_init(init: str | Path | None, phases) -> None:
    """Check a ``kick world train --init`` request before training: continuing needs explicit ``phases`` and
    ``init`` must be a world model checkpoint (a directory holding training.json). Returns None; raises ValueError
    otherwise. Nothing is checked when ``init`` is None."""
    if init and not phases:
        raise ValueError("--init: give the phases to continue with (--phase CURRICULUM:STEPS ...)")
    if init and not (Path(init) / "training.json").is_file():
        raise ValueError(f"--init: {init} is not a world model checkpoint (no training.json)")


def train(output: str | Path, world_config: WorldConfig | None = None, cfg: TrainConfig | None = None,
          init: str | Path | None = None) -> Path:
    """Train tokenizer + model through ``cfg.phases`` and save to ``output`` atomically. With ``init`` (a
    checkpoint with its tokenizer and training.json), the phases continue from it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from kick_hub.io import atomic_dir
    from kick_hub.world.corpus import CURRICULA, documents

    cfg = cfg or TrainConfig()
    world = World(world_config or WorldConfig())
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(output.parent, os.W_OK):
        raise PermissionError(f"output: directory {output.parent} is not writable")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    start = time.time()
    log: list[dict] = []
    if init is None:
        tokenizer = train_tokenizer(world, cfg)
        model = build_model(tokenizer, cfg)
    else:
        tokenizer = AutoTokenizer.from_pretrained(init)
        model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
        log += json.loads((Path(init) / "training.json").read_text()).get("log", [])
    batch_loss = make_loss(model, cfg)
    for phase in cfg.phases:
        # each phase (also after --init) draws its own document stream, never replaying an earlier one
        index = sum(1 for entry in log if entry["step"] == 0)
        torch.manual_seed(cfg.seed + 1 + index)
        docs = documents(world, seed=cfg.seed + 1000 * index, curriculum=CURRICULA[phase.curriculum], fresh=True)
        log += run_phase(model, batch_loss, tokenizer, docs, cfg, phase, f"{index}-{phase.curriculum}")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=32,
    )
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        recipe = {"world": asdict(world.config), "train": asdict(cfg), "params": n_params,
                  "wall_time_s": round(time.time() - start, 1), "torch": torch.__version__, "log": log}
        (tmp / "training.json").write_text(dumps(recipe, indent=2) + "\n")
    return output
