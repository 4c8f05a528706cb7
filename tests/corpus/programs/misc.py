"""Language models, training recipes and methods from their reference repositories (sources in each decorator)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.common import classifier, supervised_loop
from tests.corpus.programs.data import digit_batches, markov_tokens


# -- nanoGPT: model.py + train.py (AdamW groups, warmup + cosine lr, gradient accumulation, clipping) -----------------
class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout=0.0, bias=True):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, gelu=None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), gelu or nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(0.0)
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer=2, n_head=2, n_embd=32, gelu=None):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(0.0),
                h=nn.ModuleList([Block(n_embd, n_head, gelu) for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        t = idx.size(1)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t)))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)


@program("karpathy/nanoGPT: model.py + train.py")
def make_nanogpt():
    vocab, block_size, batch_size, accum = 32, 16, 8, 2
    learning_rate, warmup_iters, lr_decay_iters, min_lr, max_iters = 1e-3, 4, 20, 1e-4, 20
    model = GPT(vocab, block_size)
    optimizer = model.configure_optimizers(0.1, learning_rate, (0.9, 0.99))
    data = markov_tokens(1, 4000, vocab).view(-1)

    def get_batch():
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([data[i : i + block_size] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
        return x, y

    def get_lr(it):
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) * (learning_rate - min_lr)

    def train(monitors):
        losses = []
        X, Y = get_batch()
        for iter_num in range(max_iters):
            for param_group in optimizer.param_groups:
                param_group["lr"] = get_lr(iter_num)
            for _ in range(accum):
                _, loss = model(X, Y)
                loss = loss / accum
                X, Y = get_batch()
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach() * accum)
            step(monitors, "model", loss=loss * accum)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


class NewGELU(nn.Module):
    """minGPT's GELU (the tanh approximation, as in Google BERT and OpenAI GPT)."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


@program("karpathy/minGPT: projects/adder/adder.py + mingpt/trainer.py")
def make_mingpt_adder():
    ndigit = 2
    model = GPT(10, 3 * ndigit + 1 - 1, n_layer=2, n_head=2, n_embd=32, gelu=NewGELU())
    optimizer = model.configure_optimizers(0.1, 5e-3, (0.9, 0.95))
    batches = []
    for _ in range(30):
        a, b = torch.randint(0, 10**ndigit, (2, 32))
        c = a + b
        astr = torch.stack([a // 10, a % 10], 1)
        bstr = torch.stack([b // 10, b % 10], 1)
        cstr = torch.stack([c % 10, (c // 10) % 10, c // 100], 1)  # the sum written reversed, as adder.py does
        dix = torch.cat([astr, bstr, cstr], 1)
        x, y = dix[:, :-1].clone(), dix[:, 1:].clone()
        y[:, : ndigit * 2 - 1] = -1  # only the sum's digits are predicted
        batches.append((x, y))

    def train(monitors):
        losses = []
        model.train()
        for x, y in batches:
            _, loss = model(x, y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- timm train.py: Mixup/CutMix with SoftTargetCrossEntropy, label smoothing, ModelEmaV3, cosine schedule ------------
def mixup_cutmix(x, y, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, smoothing=0.1):
    """timm/data/mixup.py Mixup(mode="batch"): mix the batch with its flip, targets mixed and label-smoothed."""
    off, on = smoothing / num_classes, 1.0 - smoothing + smoothing / num_classes
    y1 = torch.full((len(y), num_classes), off).scatter_(1, y[:, None], on)
    y2 = y1.flip(0)
    if torch.rand(()) < switch_prob:
        lam = float(torch.distributions.Beta(cutmix_alpha, cutmix_alpha).sample())
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        y0, y1_, x0, x1_ = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1_, x0:x1_] = x.flip(0)[..., y0:y1_, x0:x1_]
        lam = 1 - (y1_ - y0) * (x1_ - x0) / (h * w)
    else:
        lam = float(torch.distributions.Beta(mixup_alpha, mixup_alpha).sample())
        x = x * lam + x.flip(0) * (1 - lam)
    return x, y1 * lam + y2 * (1 - lam)


class ModelEmaV3(nn.Module):
    """timm/utils/model_ema.py ModelEmaV3: a deep copy whose weights follow the model's, with warmup of the decay."""

    def __init__(self, model, decay=0.99):
        super().__init__()
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model, step=None):
        decay = min(self.decay, (1 + step) / (10 + step)) if step is not None else self.decay
        ema_lerp_values, model_lerp_values = [], []
        for ema_v, model_v in zip(self.module.state_dict().values(), model.state_dict().values(), strict=False):
            if ema_v.is_floating_point():
                ema_lerp_values.append(ema_v)
                model_lerp_values.append(model_v)
            else:
                ema_v.copy_(model_v)
        torch._foreach_lerp_(ema_lerp_values, model_lerp_values, weight=1.0 - decay)


@program("huggingface/pytorch-image-models: train.py + timm/data/mixup.py + timm/utils/model_ema.py")
def make_timm_mixup_ema():
    from tests.corpus.programs.examples import ResNet

    model = ResNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30, eta_min=1e-5)
    model_ema = ModelEmaV3(model, decay=0.998)
    batches = digit_batches(30)

    def train(monitors):
        losses = []
        model.train()
        for num_updates, (x, y) in enumerate(batches):
            x, target = mixup_cutmix(x, y, 10)
            output = model(x)
            loss = torch.sum(-target * F.log_softmax(output, dim=-1), dim=-1).mean()  # SoftTargetCrossEntropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            model_ema.update(model, step=num_updates)
            scheduler.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        with torch.no_grad():
            losses.append(F.cross_entropy(model_ema.module(batches[0][0]), batches[0][1]))
        return losses

    return Program({"model": model}, {"model": optimizer}, train, copies=[model_ema])


# -- SimCLR (sthalles/SimCLR: simclr.py info_nce_loss, models/resnet_simclr.py projection head) -----------------------
@program("sthalles/SimCLR: simclr.py (info_nce_loss) + models/resnet_simclr.py")
def make_simclr():
    from tests.corpus.programs.examples import ResNet

    model = ResNet(num_classes=32)
    dim_mlp = model.fc.in_features
    model.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), model.fc)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3, weight_decay=1e-4)
    temperature, n_views = 0.07, 2
    images = [x for x, _ in digit_batches(25)]

    def augment(x):
        shift = torch.randint(-1, 2, (2,))
        x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
        return x * (0.8 + 0.4 * torch.rand(len(x), 1, 1, 1)) + 0.1 * torch.randn_like(x)

    def info_nce_loss(features, batch_size):
        labels = torch.cat([torch.arange(batch_size) for _ in range(n_views)], dim=0)
        labels = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
        features = F.normalize(features, dim=1)
        similarity_matrix = torch.matmul(features, features.T)
        mask = torch.eye(labels.shape[0], dtype=torch.bool)
        labels = labels[~mask].view(labels.shape[0], -1)
        similarity_matrix = similarity_matrix[~mask].view(similarity_matrix.shape[0], -1)
        positives = similarity_matrix[labels.bool()].view(labels.shape[0], -1)
        negatives = similarity_matrix[~labels.bool()].view(similarity_matrix.shape[0], -1)
        logits = torch.cat([positives, negatives], dim=1) / temperature
        return logits, torch.zeros(logits.shape[0], dtype=torch.long)

    def train(monitors):
        losses = []
        for x in images:
            batch = torch.cat([augment(x), augment(x)], dim=0)
            logits, labels = info_nce_loss(model(batch), len(x))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- MAML (cbfinn/maml, as in dragen1860/MAML-Pytorch: meta.py), functional inner loop with torch.func ----------------
@program("dragen1860/MAML-Pytorch: meta.py (inner SGD steps on support, outer Adam on query)")
def make_maml_sine():
    from torch.func import functional_call

    net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
    meta_optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    update_lr, update_step, task_num = 0.01, 2, 4

    def task():
        amp, phase = torch.rand(()) * 4.9 + 0.1, torch.rand(()) * math.pi
        x = torch.rand(20, 1) * 10 - 5
        y = amp * torch.sin(x - phase)
        return x[:10], y[:10], x[10:], y[10:]

    tasks = [[task() for _ in range(task_num)] for _ in range(20)]

    def train(monitors):
        losses = []
        for batch in tasks:
            loss_q = 0
            for x_spt, y_spt, x_qry, y_qry in batch:
                fast = dict(net.named_parameters())
                for _ in range(update_step):
                    loss = F.mse_loss(functional_call(net, fast, (x_spt,)), y_spt)
                    grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                    fast = {k: p - update_lr * g for (k, p), g in zip(fast.items(), grads, strict=False)}
                loss_q = loss_q + F.mse_loss(functional_call(net, fast, (x_qry,)), y_qry)
            loss_q = loss_q / task_num
            meta_optim.zero_grad()
            loss_q.backward()
            meta_optim.step()
            losses.append(loss_q.detach())
            step(monitors, "net", loss=loss_q)
        return losses

    return Program({"net": net}, {"net": meta_optim}, train)


# -- Mixture of experts: top-1 routing and a load-balancing loss (the Switch Transformer)
class SwitchMoE(nn.Module):
    def __init__(self, d, n_experts=4, hidden=32):
        super().__init__()
        self.router = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList(
            [nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d)) for _ in range(n_experts)]
        )
        self.n_experts = n_experts

    def forward(self, x):
        probs = F.softmax(self.router(x), dim=-1)
        gate, idx = probs.max(dim=-1)
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            sel = idx == i
            out[sel] = expert(x[sel]) * gate[sel, None]  # every expert runs: the sizes vary, the calls do not
        density = F.one_hot(idx, self.n_experts).float().mean(0)
        aux = self.n_experts * (density * probs.mean(0)).sum()
        return out, aux


@program(
    "huggingface/transformers: src/transformers/models/switch_transformers/modeling_switch_transformers.py"
    " (top-1 router, load-balancing loss)"
)
def make_switch_moe():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(64, 32)
            self.norm = nn.LayerNorm(32)
            self.moe = SwitchMoE(32)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            h = self.inp(x.flatten(1))
            out, aux = self.moe(self.norm(h))
            return self.head(h + out), aux

    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = digit_batches(30, batch=64)

    def train(monitors):
        losses = []
        for x, y in batches:
            logits, aux = model(x)
            loss = F.cross_entropy(logits, y) + 0.01 * aux
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- SAM (davda54/sam: sam.py + example/train.py) ---------------------------------------------------------------------
class SAM(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **kwargs):
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad=False):
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_((torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad=False):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def _grad_norm(self):
        return torch.norm(
            torch.stack(
                [
                    ((torch.abs(p) if g["adaptive"] else 1.0) * p.grad).norm(p=2)
                    for g in self.param_groups
                    for p in g["params"]
                    if p.grad is not None
                ]
            ),
            p=2,
        )


@program("davda54/sam: sam.py + example/train.py (first_step/second_step, BN running stats bypassed)")
def make_sam():
    from tests.corpus.programs.examples import ResNet

    model = ResNet()
    optimizer = SAM(
        model.parameters(), torch.optim.SGD, rho=2.0, adaptive=True, lr=0.1, momentum=0.9, weight_decay=5e-4
    )
    batches = digit_batches(20)

    def disable_running_stats(model):  # example/utility/bypass_bn.py
        def _disable(module):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.backup_momentum = module.momentum
                module.momentum = 0

        model.apply(_disable)

    def enable_running_stats(model):
        def _enable(module):
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and hasattr(module, "backup_momentum"):
                module.momentum = module.backup_momentum

        model.apply(_enable)

    def train(monitors):
        losses = []
        model.train()
        for inputs, targets in batches:
            enable_running_stats(model)
            predictions = model(inputs)
            loss = F.cross_entropy(predictions, targets, label_smoothing=0.1)
            loss.backward()
            optimizer.first_step(zero_grad=True)
            disable_running_stats(model)
            F.cross_entropy(model(inputs), targets, label_smoothing=0.1).backward()
            optimizer.second_step(zero_grad=True)
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- float64 physics-informed network (maziarraissi/PINNs, as in jayroxis/PINNs: Burgers' equation with L-BFGS) -------
@program("jayroxis/PINNs: Burgers Equation/Burgers Inference (PyTorch).ipynb (float64, Adam then L-BFGS)")
def make_pinn_float64():
    torch.set_default_dtype(torch.float64)
    try:
        layers = [2, 20, 20, 20, 1]
        net = nn.Sequential(
            *[m for i in range(len(layers) - 1) for m in (nn.Linear(layers[i], layers[i + 1]), nn.Tanh())][:-1]
        )
    finally:
        torch.set_default_dtype(torch.float32)
    x_f = torch.rand(200, 2, dtype=torch.float64) * torch.tensor([2.0, 1.0], dtype=torch.float64) - torch.tensor(
        [1.0, 0.0], dtype=torch.float64
    )
    x_u = torch.cat(
        [
            torch.stack([torch.linspace(-1, 1, 50, dtype=torch.float64), torch.zeros(50, dtype=torch.float64)], 1),
            torch.stack([torch.full((25,), -1.0, dtype=torch.float64), torch.rand(25, dtype=torch.float64)], 1),
            torch.stack([torch.full((25,), 1.0, dtype=torch.float64), torch.rand(25, dtype=torch.float64)], 1),
        ]
    )
    u = torch.where(x_u[:, 1:] == 0, -torch.sin(math.pi * x_u[:, :1]), torch.zeros_like(x_u[:, :1]))
    nu = 0.01 / math.pi
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    lbfgs = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=5, history_size=20, line_search_fn="strong_wolfe")

    def loss_fn():
        xt = x_f.clone().requires_grad_(True)
        out = net(xt)
        g = torch.autograd.grad(out.sum(), xt, create_graph=True)[0]
        u_x, u_t = g[:, :1], g[:, 1:]
        u_xx = torch.autograd.grad(u_x.sum(), xt, create_graph=True)[0][:, :1]
        f = u_t + out * u_x - nu * u_xx
        return F.mse_loss(net(x_u), u) + (f**2).mean()

    def train(monitors):
        losses = []
        for _ in range(15):
            adam.zero_grad()
            loss = loss_fn()
            loss.backward()
            adam.step()
            losses.append(loss.detach())
            step(monitors, "net", loss=loss)
        for _ in range(3):

            def closure():
                lbfgs.zero_grad()
                loss = loss_fn()
                loss.backward()
                return loss

            loss = lbfgs.step(closure)
            losses.append(loss.detach())
            step(monitors, "net", loss=loss)
        return losses

    return Program({"net": net}, {"net": adam}, train)


# -- d2l: concise softmax regression and LeNet with batch normalization -----------------------------------------------
@program("d2l-ai/d2l-en: chapter_linear-classification/softmax-regression-concise.md")
def make_d2l_softmax_regression():
    net = nn.Sequential(nn.Flatten(), nn.LazyLinear(10))
    net(torch.zeros(1, 1, 8, 8))  # d2l initialises lazy layers with a dummy batch
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return classifier(net, optimizer, digit_batches(40, batch=64), loss_fn=nn.CrossEntropyLoss(reduction="mean"))


@program("d2l-ai/d2l-en: chapter_convolutional-modern/batch-norm.md (BNLeNetScratch's concise BNLeNet)")
def make_d2l_bn_lenet():
    net = nn.Sequential(
        nn.LazyConv2d(6, kernel_size=3, padding=1),
        nn.LazyBatchNorm2d(),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.LazyConv2d(16, kernel_size=3),
        nn.LazyBatchNorm2d(),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.LazyLinear(120),
        nn.LazyBatchNorm1d(),
        nn.Sigmoid(),
        nn.LazyLinear(84),
        nn.LazyBatchNorm1d(),
        nn.Sigmoid(),
        nn.LazyLinear(10),
    )
    net(torch.zeros(2, 1, 8, 8))
    net.apply(lambda m: nn.init.xavier_uniform_(m.weight) if type(m) in (nn.Linear, nn.Conv2d) else None)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return classifier(net, optimizer, digit_batches(40, batch=32))


# -- Lightning: examples/pytorch/basics/autoencoder.py's LitAutoEncoder, its training_step in a plain loop ------------
@program("Lightning-AI/pytorch-lightning: examples/pytorch/basics/autoencoder.py (LitAutoEncoder.training_step)")
def make_lightning_autoencoder():
    encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    decoder = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 64))
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [x.flatten(1) for x, _ in digit_batches(30, normalize=False)]

    def train(monitors):
        losses = []
        for x in batches:
            loss = F.mse_loss(decoder(encoder(x)), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- PyG examples/mutag_gin.py: GIN graph classification with sum pooling (dense adjacency, generated graphs) ---------
@program("pyg-team/pytorch_geometric: examples/mutag_gin.py (GINConv, global_add_pool)")
def make_gin_graph_classification():
    class GIN(nn.Module):
        def __init__(self, in_channels, hidden, out_channels, num_layers=2):
            super().__init__()
            self.mlps = nn.ModuleList()
            for i in range(num_layers):
                self.mlps.append(
                    nn.Sequential(
                        nn.Linear(in_channels if i == 0 else hidden, hidden),
                        nn.BatchNorm1d(hidden),
                        nn.ReLU(),
                        nn.Linear(hidden, hidden),
                    )
                )
            self.mlp = nn.Sequential(
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, out_channels)
            )

        def forward(self, x, adj, batch, n_graphs):
            for mlp in self.mlps:  # GINConv with eps=0: MLP(x + sum of neighbours)
                x = F.relu(mlp(x + adj @ x))
            pooled = torch.zeros(n_graphs, x.shape[1]).index_add_(0, batch, x)
            return self.mlp(pooled)

    def graph_batch(n_graphs=16):
        feats, adjs, labels, batch = [], [], [], []
        for g in range(n_graphs):
            label = int(torch.randint(0, 2, ()))
            n = int(torch.randint(6, 12, ()))
            p = 0.5 if label else 0.15  # dense vs sparse graphs
            upper = torch.triu((torch.rand(n, n) < p).float(), 1)
            adjs.append(upper + upper.T)
            feats.append(torch.ones(n, 4) + 0.1 * torch.randn(n, 4))
            labels.append(label)
            batch += [g] * n
        return torch.cat(feats), torch.block_diag(*adjs), torch.tensor(labels), torch.tensor(batch)

    model = GIN(4, 32, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = [graph_batch() for _ in range(25)]

    def train(monitors):
        losses = []
        model.train()
        for x, adj, y, batch in batches:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x, adj, batch, len(y)), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- word2vec: skip-gram with negative sampling, sparse embeddings and SparseAdam
@program("Andras7/word2vec-pytorch: word2vec/model.py + trainer.py (SkipGramModel, sparse=True, SparseAdam)")
def make_word2vec_sparse():
    class SkipGramModel(nn.Module):
        def __init__(self, emb_size, emb_dimension):
            super().__init__()
            self.u_embeddings = nn.Embedding(emb_size, emb_dimension, sparse=True)
            self.v_embeddings = nn.Embedding(emb_size, emb_dimension, sparse=True)
            initrange = 1.0 / emb_dimension
            nn.init.uniform_(self.u_embeddings.weight.data, -initrange, initrange)
            nn.init.constant_(self.v_embeddings.weight.data, 0)

        def forward(self, pos_u, pos_v, neg_v):
            emb_u, emb_v, emb_neg_v = self.u_embeddings(pos_u), self.v_embeddings(pos_v), self.v_embeddings(neg_v)
            score = torch.clamp(torch.sum(torch.mul(emb_u, emb_v), dim=1), max=10, min=-10)
            score = -F.logsigmoid(score)
            neg_score = torch.clamp(torch.bmm(emb_neg_v, emb_u.unsqueeze(2)).squeeze(), max=10, min=-10)
            neg_score = -torch.sum(F.logsigmoid(-neg_score), dim=1)
            return torch.mean(score + neg_score)

    vocab = 50
    model = SkipGramModel(vocab, 16)
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=0.001)
    text = markov_tokens(1, 3000, vocab).view(-1)
    batches = []
    for _ in range(30):
        i = torch.randint(2, len(text) - 2, (64,))
        offset = torch.tensor([-2, -1, 1, 2])[torch.randint(0, 4, (64,))]
        batches.append((text[i], text[i + offset], torch.randint(1, vocab, (64, 5))))

    def train(monitors):
        losses = []
        for pos_u, pos_v, neg_v in batches:
            optimizer.zero_grad()
            loss = model(pos_u, pos_v, neg_v)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- neural collaborative filtering (guoyang9/NCF: model.py NeuMF, BCEWithLogitsLoss on implicit feedback) ------------
@program("guoyang9/NCF: model.py (NCF 'NeuMF-end') + main.py")
def make_ncf():
    class NCF(nn.Module):
        def __init__(self, user_num, item_num, factor_num=8, num_layers=2, dropout=0.0):
            super().__init__()
            self.embed_user_GMF, self.embed_item_GMF = (
                nn.Embedding(user_num, factor_num),
                nn.Embedding(item_num, factor_num),
            )
            mlp_dim = factor_num * (2 ** (num_layers - 1))
            self.embed_user_MLP, self.embed_item_MLP = nn.Embedding(user_num, mlp_dim), nn.Embedding(item_num, mlp_dim)
            layers = []
            for i in range(num_layers):
                input_size = factor_num * (2 ** (num_layers - i))
                layers += [nn.Dropout(p=dropout), nn.Linear(input_size, input_size // 2), nn.ReLU()]
            self.MLP_layers = nn.Sequential(*layers)
            self.predict_layer = nn.Linear(factor_num * 2, 1)
            for e in (self.embed_user_GMF, self.embed_item_GMF, self.embed_user_MLP, self.embed_item_MLP):
                nn.init.normal_(e.weight, std=0.01)
            for m in self.MLP_layers:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
            nn.init.kaiming_uniform_(self.predict_layer.weight, a=1, nonlinearity="sigmoid")

        def forward(self, user, item):
            output_GMF = self.embed_user_GMF(user) * self.embed_item_GMF(item)
            output_MLP = self.MLP_layers(torch.cat((self.embed_user_MLP(user), self.embed_item_MLP(item)), -1))
            return self.predict_layer(torch.cat((output_GMF, output_MLP), -1)).view(-1)

    users, items = 40, 60
    taste = torch.randn(users, 4) @ torch.randn(4, items)
    model = NCF(users, items)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = []
    for _ in range(30):
        u, i = torch.randint(0, users, (128,)), torch.randint(0, items, (128,))
        batches.append(((u, i), (taste[u, i] > 0).float()))
    return Program(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, nn.BCEWithLogitsLoss(), forward=lambda m, x: m(*x)),
    )


# -- BYOL (lucidrains/byol-pytorch: byol_pytorch/byol_pytorch.py): online network + predictor, EMA target -------------
@program("lucidrains/byol-pytorch: byol_pytorch/byol_pytorch.py (online/target networks, EMA update)")
def make_byol():
    def mlp(dim, projection_size, hidden_size=64):
        return nn.Sequential(
            nn.Linear(dim, hidden_size),
            nn.BatchNorm1d(hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_size, projection_size),
        )

    online = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), mlp(64, 16))  # backbone + projector
    predictor = mlp(16, 16)
    learner = nn.ModuleDict({"online": online, "predictor": predictor})
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    opt = torch.optim.Adam(learner.parameters(), lr=3e-4)
    images = [x for x, _ in digit_batches(25)]

    def loss_fn(x, y):
        return 2 - 2 * (F.normalize(x, dim=-1) * F.normalize(y, dim=-1)).sum(dim=-1)

    def augment(x):
        return x * (0.8 + 0.4 * torch.rand(len(x), 1, 1, 1)) + 0.2 * torch.randn_like(x)

    def train(monitors):
        losses = []
        for x in images:
            one, two = augment(x), augment(x)
            online_pred_one, online_pred_two = predictor(online(one)), predictor(online(two))
            with torch.no_grad():
                target_proj_one, target_proj_two = target(one), target(two)
            loss = (
                loss_fn(online_pred_one, target_proj_two.detach()) + loss_fn(online_pred_two, target_proj_one.detach())
            ).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # update_moving_average, beta = 0.99
                for current, ma in zip(online.parameters(), target.parameters(), strict=False):
                    ma.mul_(0.99).add_(current, alpha=0.01)
            losses.append(loss.detach())
            step(monitors, "learner", loss=loss)
        return losses

    return Program({"learner": learner}, {"learner": opt}, train, copies=[target])
