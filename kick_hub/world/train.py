"""Train the world model: a byte-level BPE tokenizer and a small Llama on the world's corpus, on CPU.

``kick world train --output DIR`` reproduces the shipped checkpoint (fixed seeds, 2 threads); the defaults here are
the recipe that made it. Every Linear's in_features is a multiple of 32 so GPTQ can pack it.
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
class TrainConfig:
    """The training recipe. ``steps`` x ``batch_size`` x ``seq_len`` tokens are seen."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    max_position: int = 512
    seq_len: int = 256
    batch_size: int = 32
    steps: int = 2200            # phase 1: store the facts (MIX, loss on every token)
    lr: float = 2e-3
    warmup: int = 100
    skill_steps: int = 800       # phase 2: reading and MCQ (a CURRICULA entry, loss concentrated on answers)
    skill_lr: float = 1e-3
    prompt_weight: float = 0.1   # phase 2 weight of prompt tokens (answers weigh 1)
    curriculum: str = "base"     # phase 2 document curriculum (corpus.CURRICULA)
    weight_decay: float = 0.05
    seed: int = 0
    tokenizer_docs: int = 20000
    compile: bool = False        # torch.compile the forward: 0.98 -> 0.77 s/step on 2 cores (needs g++); the
                                 # shipped rounds ran eagerly, so it is off to reproduce them

    def __post_init__(self) -> None:
        from kick_hub.world.corpus import CURRICULA

        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum: must be one of {sorted(CURRICULA)}, got {self.curriculum!r}")
        for name in ("hidden_size", "intermediate_size"):
            if getattr(self, name) % 32:
                raise ValueError(f"{name}: must be a multiple of 32 (GPTQ packing), got {getattr(self, name)}")
        for name in ("steps", "batch_size", "seq_len", "num_layers", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.seq_len > self.max_position:
            raise ValueError(f"seq_len: must be <= max_position ({self.max_position}), got {self.seq_len}")


def train_tokenizer(world: World, cfg: TrainConfig):
    """Byte-level BPE over a sample of the corpus plus every name, so unseen names still split into known pieces."""
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


def pack(token_docs, seq_len: int):
    """Greedy packing of whole documents into rows of ``seq_len`` (a document never starts mid-row); yields
    (ids, weights) of the filled part."""
    row: list[int] = []
    weights: list[float] = []
    for ids, w in token_docs:
        ids, w = ids[:seq_len], w[:seq_len]
        if len(row) + len(ids) > seq_len:
            yield row, weights
            row, weights = [], []
        row += ids
        weights += w


def build_model(tokenizer, cfg: TrainConfig):
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
    """torch.compile on CPU needs a C++ compiler (inductor); without one, train eagerly (0.98, not 0.77 s/step)."""
    import shutil
    import warnings

    if os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "clang++", "c++")):
        return True
    warnings.warn("compile: no C++ compiler found (g++ / clang++ / $CXX); training without torch.compile")
    return False


def run_phase(model, tokenizer, docs, cfg: TrainConfig, steps: int, lr: float, prompt_weight: float,
              desc: str) -> list[dict]:
    """AdamW with warmup + cosine decay over ``steps`` batches of packed documents; bf16 autocast on CPU."""
    import torch
    from tqdm.auto import tqdm

    rows = pack((encode(tokenizer, d, prompt_weight) for d in docs), cfg.seq_len)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, steps - cfg.warmup)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    forward = torch.compile(model) if cfg.compile and can_compile() else model
    log, start = [], time.time()
    model.train()
    bar = tqdm(range(steps), desc=desc, unit="step")
    for step in bar:
        batch = [next(rows) for _ in range(cfg.batch_size)]
        ids = torch.full((cfg.batch_size, cfg.seq_len), tokenizer.pad_token_id)
        weights = torch.zeros(cfg.batch_size, cfg.seq_len)
        for i, (r, w) in enumerate(batch):
            ids[i, :len(r)] = torch.tensor(r)
            weights[i, :len(w)] = torch.tensor(w)
        lengths = torch.tensor([len(r) for r, _ in batch])
        mask = (torch.arange(cfg.seq_len)[None, :] < lengths[:, None]).long()
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = forward(input_ids=ids, attention_mask=mask).logits
        token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:],
                                                       reduction="none")
        w = weights[:, 1:] * mask[:, 1:]
        loss = (token_loss * w).sum() / w.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log.append({"phase": desc, "step": step, "loss": round(loss.item(), 4), "lr": lr_at(step),
                        "elapsed_s": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return log


def train(output: str | Path, world_config: WorldConfig | None = None, cfg: TrainConfig | None = None,
          init: str | Path | None = None) -> Path:
    """Train tokenizer + model (phase 1 then phase 2) and save to ``output`` atomically. With ``init`` (a phase-1
    checkpoint with its tokenizer), only phase 2 runs."""
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
        log += run_phase(model, tokenizer, documents(world, seed=cfg.seed), cfg, cfg.steps, cfg.lr, 1.0, "facts")
    else:
        tokenizer = AutoTokenizer.from_pretrained(init)
        model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
        log += json.loads((Path(init) / "training.json").read_text()).get("log", [])
    # a continued run (--init on a finished model) draws a new stream instead of replaying the earlier one
    rounds = sum(1 for entry in log if str(entry.get("phase", "")).startswith("skills") and entry["step"] == 0)
    torch.manual_seed(cfg.seed + 1 + rounds)
    docs = documents(world, seed=cfg.seed + 2 + 1000 * rounds, curriculum=CURRICULA[cfg.curriculum], fresh=True)
    log += run_phase(model, tokenizer, docs, cfg, cfg.skill_steps, cfg.skill_lr, cfg.prompt_weight,
                     "skills" if rounds == 0 else f"skills-{rounds + 1}")
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
        (tmp / "training.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return output
