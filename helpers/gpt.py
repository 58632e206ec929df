"""A small GPT-style language model, readable in one sitting.

A decoder-only transformer: token and position embeddings, ``n_layer`` blocks of causal
self-attention and an MLP (pre-norm, residual), a final LayerNorm, and an output layer that
reuses the token embedding's weights ("tied embeddings"). Shapes in comments use
B = batch, T = time (tokens), C = channels (``d_model``), H = heads, V = vocabulary.

Every Linear layer is a plain ``nn.Linear`` with a stable name (``blocks.0.attn.qkv``,
``blocks.0.attn.proj``, ``blocks.0.mlp.fc``, ``blocks.0.mlp.proj``), so later lessons can wrap
them (LoRA) or freeze them by name.

Example:
    >>> model = GPT(GPTConfig(vocab_size=500))
    >>> logits = model(torch.zeros(2, 16, dtype=torch.long))    # (2, 16, 500)
    >>> generate(model, prompt_ids, max_new_tokens=20, temperature=0.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    context: int = 128         # the longest sequence the model reads (position embeddings)
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128         # channels; each head has d_model // n_head
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        if c.d_model % c.n_head:
            raise ValueError(f"d_model={c.d_model} must be a multiple of n_head={c.n_head}")
        self.n_head, self.dropout = c.n_head, c.dropout
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)     # queries, keys and values in one matmul
        self.proj = nn.Linear(c.d_model, c.d_model)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                               # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        # is_causal: position t attends to positions <= t only, so no token sees its future.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, C/H)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                    # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(c.d_model, 4 * c.d_model)
        self.proj = nn.Linear(4 * c.d_model, c.d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.d_model), CausalSelfAttention(c)
        self.ln2, self.mlp = nn.LayerNorm(c.d_model), MLP(c)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x):                          # (B, T, C) -> (B, T, C)
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.context, c.d_model)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():     # GPT-2's scaled init of residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / (2 * c.n_layer) ** 0.5)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits: ids (B, T) -> (B, T, V); position t predicts token t + 1."""
        B, T = ids.shape
        if T > self.config.context:
            raise ValueError(f"sequence of {T} tokens is longer than the context ({self.config.context})")
        pos = torch.arange(T, device=ids.device)
        x = self.tok_emb(ids) + self.pos_emb(pos)                   # (B, T, C)
        for block in self.blocks:
            x = block(x)
        # Tied embeddings: the output layer is the token embedding, transposed, so reading and
        # writing a token share one vector (and the checkpoint stores it once).
        return F.linear(self.ln_f(x), self.tok_emb.weight)          # (B, T, V)


def count_params_by_part(model: GPT) -> dict[str, int]:
    """Parameters per part (tied weights counted once, under embeddings)."""
    parts = {"token embedding (= output layer)": model.tok_emb.weight.numel(),
             "position embedding": model.pos_emb.weight.numel()}
    for name in ("attn", "mlp"):
        parts[f"{name} (all blocks)"] = sum(p.numel() for b in model.blocks for p in getattr(b, name).parameters())
    parts["layer norms"] = sum(p.numel() for m in model.modules() if isinstance(m, nn.LayerNorm)
                               for p in m.parameters())
    return parts


@torch.inference_mode()
def generate(model: GPT, ids, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             seed: int | None = 0, stop_id: int | None = None, progress: bool = False) -> torch.Tensor:
    """Continue ``ids`` (T,) or (B, T) by ``max_new_tokens`` sampled tokens.

    Args:
        temperature: 0 picks the most likely token (greedy); higher values sample more freely.
        top_k: sample only among the k most likely tokens.
        seed: seeds the sampler's own generator, so the same seed gives the same text.
        stop_id: stop once every row has produced this token (e.g. <eos>).
    Returns:
        ids with the new tokens appended, same number of dimensions as given.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.as_tensor(ids, device=device)
    squeeze = ids.dim() == 1
    ids = ids.view(1, -1) if squeeze else ids                         # (B, T)
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    done = torch.zeros(len(ids), dtype=torch.bool, device=device)
    for _ in tqdm(range(max_new_tokens), desc="generating", disable=not progress, leave=False):
        logits = model(ids[:, -model.config.context:])[:, -1, :].float()   # (B, V) at the last position
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)                          # (B, 1)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=gen)  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
        if stop_id is not None:
            done |= nxt.squeeze(1) == stop_id
            if done.all():
                break
    model.train(was_training)
    return ids[0] if squeeze else ids
