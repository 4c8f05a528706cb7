"""Hugging Face transformers models built from small configs (never ``from_pretrained``), trained with the loop of
transformers' ``examples/pytorch/*_no_trainer.py`` scripts: AdamW with a no-decay group, linear warmup schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.data import digits, markov_tokens

HF = "huggingface/transformers: "


def no_trainer_loop(model, batches, *, lr=2e-3, key="model", warmup=3, clip=1.0, params=None):
    """run_*_no_trainer.py: decay/no-decay parameter groups, AdamW, get_scheduler("linear"), clip, step, zero_grad."""
    import transformers

    no_decay = ["bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad] if params is None else params
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    scheduler = transformers.get_scheduler(
        "linear", optimizer, num_warmup_steps=warmup, num_training_steps=len(batches)
    )

    def train(monitors):
        losses = []
        model.train()
        for batch in batches:
            outputs = model(**batch)
            loss = outputs.loss
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, key, loss=loss)
        return losses

    return Program({key: model}, {key: optimizer}, train)


def with_preflight(prog: Program, batches: list[dict], key: str = "model") -> Program:
    """Preflight on the first 8 dict batches (inputs and ``labels`` split as Hugging Face datasets give them)."""
    prog.preflight = {
        "model": prog.models[key],
        "data": batches[:8],
        "loss_fn": nn.CrossEntropyLoss(),
        "optimizer": prog.optimizers[key],
    }
    return prog


def lm_batches(n, vocab, length=16, batch=8):
    table = torch.randint(1, vocab, (vocab, 2))
    return [{"input_ids": ids, "labels": ids} for ids in markov_tokens(n * batch, length, vocab, table).split(batch)]


@program(HF + "examples/pytorch/language-modeling/run_clm_no_trainer.py (GPT2LMHeadModel)")
def make_hf_gpt2_clm():
    import transformers

    config = transformers.GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return no_trainer_loop(transformers.GPT2LMHeadModel(config), lm_batches(25, 48))


@program(HF + "src/transformers/models/llama/modeling_llama.py + run_clm_no_trainer.py (gradient checkpointing)")
def make_hf_llama_clm_checkpointing():
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = transformers.LlamaForCausalLM(config)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return no_trainer_loop(model, lm_batches(25, 48))


@program(HF + "examples/pytorch/translation/run_translation_no_trainer.py (T5ForConditionalGeneration)")
def make_hf_t5_seq2seq():
    import transformers

    config = transformers.T5Config(
        vocab_size=40, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, decoder_start_token_id=0, pad_token_id=0
    )
    model = transformers.T5ForConditionalGeneration(config)
    batches = []
    for _ in range(25):
        src = torch.randint(2, 40, (8, 10))
        labels = src.flip(1)
        batches.append({"input_ids": src, "attention_mask": torch.ones_like(src), "labels": labels})
    return no_trainer_loop(model, batches, lr=3e-3)


@program(HF + "examples/pytorch/image-classification/run_image_classification_no_trainer.py (ViT)")
def make_hf_vit():
    import transformers

    config = transformers.ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    model = transformers.ViTForImageClassification(config)
    x, y = digits()
    order = torch.randperm(len(x))[: 25 * 16]
    batches = [{"pixel_values": (x[i] - 0.5) / 0.5, "labels": y[i]} for i in order.split(16)]
    return with_preflight(no_trainer_loop(model, batches, lr=2e-3), batches)


@program(HF + "examples/pytorch/token-classification/run_ner_no_trainer.py (BertForTokenClassification)")
def make_hf_bert_token_classification():
    import transformers

    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=4,
    )
    model = transformers.BertForTokenClassification(config)
    tag = torch.randint(0, 4, (40,))
    batches = []
    for _ in range(25):
        ids = torch.randint(3, 40, (8, 12))
        labels = tag[ids]
        mask = torch.ones_like(ids)
        mask[:4, 9:] = 0  # padded tails, labelled -100 as the script's tokenizer alignment does
        labels = labels.masked_fill(mask == 0, -100)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return no_trainer_loop(model, batches, lr=3e-3)


@program(HF + "examples/pytorch/text-classification/run_glue_no_trainer.py (DistilBertForSequenceClassification)")
def make_hf_distilbert_classification():
    import transformers

    config = transformers.DistilBertConfig(
        vocab_size=40, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=32, num_labels=2
    )
    model = transformers.DistilBertForSequenceClassification(config)
    batches = []
    for _ in range(25):
        ids = torch.randint(3, 40, (8, 12))
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": (ids == 7).any(1).long()})
    return with_preflight(no_trainer_loop(model, batches, lr=3e-3), batches)


# -- LoRA adapters (peft's lora.Linear) on a GPT-2 whose base weights are frozen --------------------------------------
class LoraLinear(nn.Module):
    """huggingface/peft src/peft/tuners/lora/layer.py: y = base(x) + B(A(dropout(x))) * alpha / r, B zero at init."""

    def __init__(self, base: nn.Module, in_features: int, out_features: int, r: int = 4, alpha: int = 8):
        super().__init__()
        self.base_layer = base
        self.lora_dropout = nn.Dropout(0.05)
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


@program("huggingface/peft: src/peft/tuners/lora/layer.py + examples/causal_language_modeling (LoRA on GPT-2 c_attn)")
def make_hf_gpt2_lora():
    import transformers

    config = transformers.GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    pre = lm_batches(15, 48)  # the "pretrained" base: trained on one chain, then frozen
    base_opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for batch in pre:
        model(**batch).loss.backward()
        base_opt.step()
        base_opt.zero_grad()
    model.requires_grad_(False)
    for block in model.transformer.h:
        block.attn.c_attn = LoraLinear(block.attn.c_attn, 32, 96)
    params = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    return no_trainer_loop(model, lm_batches(25, 48), lr=1e-2, params=params, warmup=0)
