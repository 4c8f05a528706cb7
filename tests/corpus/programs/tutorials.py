"""pytorch/tutorials (beginner, intermediate, advanced) and the PyTorch docs' recipes, scaled down
(github.com/pytorch/tutorials or github.com/pytorch/pytorch, the path in each decorator)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize, prune

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.common import classifier, supervised_loop
from tests.corpus.programs.data import CartPole, digit_batches, markov_tokens

TUT = "pytorch/tutorials: "


# -- beginner_source/basics/quickstart_tutorial.py -----------------------------------------------------------------
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


@program(TUT + "beginner_source/basics/quickstart_tutorial.py")
def make_quickstart():
    model = NeuralNetwork()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return classifier(model, optimizer, digit_batches(40, batch=64))


# -- beginner_source/blitz/cifar10_tutorial.py ---------------------------------------------------------------------
class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 2)
        self.fc1 = nn.Linear(16 * 2 * 2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = F.relu(self.conv2(x))
        x = torch.flatten(F.max_pool2d(x, 1), 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@program(TUT + "beginner_source/blitz/cifar10_tutorial.py")
def make_cifar10_lenet():
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return classifier(model, optimizer, digit_batches(40, batch=32))


# -- intermediate_source/per_sample_grads.py: vmap(grad(functional_call)) --------------------------------------------
class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.fc1 = nn.Linear(8 * 3 * 3, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def per_sample_program(model, batches, clip=None, noise=0.0, lr=0.1):
    from torch.func import functional_call, grad, vmap

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def compute_loss(params, buffers, sample, target):
        predictions = functional_call(model, (params, buffers), (sample.unsqueeze(0),))
        return F.nll_loss(predictions, target.unsqueeze(0))

    ft_compute_sample_grad = vmap(grad(compute_loss), in_dims=(None, None, 0, 0))

    def train(monitors):
        losses = []
        for x, y in batches:
            params = {k: v.detach() for k, v in model.named_parameters()}
            buffers = {k: v.detach() for k, v in model.named_buffers()}
            per_sample = ft_compute_sample_grad(params, buffers, x, y)
            if clip is not None:  # opacus: clip each sample's whole gradient, sum, add noise, average
                norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_sample.values()], 1).norm(dim=1)
                factor = (clip / (norms + 1e-6)).clamp(max=1.0)
                per_sample = {k: g * factor.view(-1, *[1] * (g.dim() - 1)) for k, g in per_sample.items()}
            for name, p in model.named_parameters():
                summed = per_sample[name].sum(0)
                if noise:
                    summed = summed + torch.normal(0.0, noise * clip, summed.shape)
                p.grad = summed / len(x)
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():
                loss = F.nll_loss(model(x), y)
            losses.append(loss)
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


@program(TUT + "intermediate_source/per_sample_grads.py")
def make_per_sample_grads():
    return per_sample_program(SimpleCNN(), digit_batches(20, batch=32))


@program("pytorch/opacus: opacus/optimizers/optimizer.py (DPOptimizer: clip per sample, add noise) + examples/mnist.py")
def make_dp_sgd():
    return per_sample_program(SimpleCNN(), digit_batches(20, batch=32), clip=1.0, noise=0.5, lr=0.5)


# -- intermediate_source/pruning_tutorial.py: prune, then fine-tune (weight = weight_orig * weight_mask) --------------
@program(TUT + "intermediate_source/pruning_tutorial.py")
def make_pruning():
    model = LeNet()
    prune.random_unstructured(model.conv1, name="weight", amount=0.3)
    prune.l1_unstructured(model.conv1, name="bias", amount=3)
    prune.ln_structured(model.conv2, name="weight", amount=0.5, n=2, dim=0)
    parameters_to_prune = ((model.fc1, "weight"), (model.fc2, "weight"), (model.fc3, "weight"))
    prune.global_unstructured(parameters_to_prune, pruning_method=prune.L1Unstructured, amount=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return classifier(model, optimizer, digit_batches(40))


# -- intermediate_source/parametrizations.py: Symmetric and matrix-exponential orthogonal weights ---------------------
class Symmetric(nn.Module):
    def forward(self, X):
        return X.triu() + X.triu(1).transpose(-1, -2)


class MatrixExponential(nn.Module):
    def forward(self, X):
        return torch.matrix_exp(X)


class Skew(nn.Module):
    def forward(self, X):
        A = X.triu(1)
        return A - A.transpose(-1, -2)


@program(TUT + "intermediate_source/parametrizations.py")
def make_parametrizations():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    parametrize.register_parametrization(model[3], "weight", Symmetric())
    parametrize.register_parametrization(model[1], "bias", nn.Identity())
    layer = model[5]
    parametrize.register_parametrization(layer, "weight", nn.Identity(), unsafe=True)
    orth = nn.Linear(32, 32)
    parametrize.register_parametrization(orth, "weight", Skew())
    parametrize.register_parametrization(orth, "weight", MatrixExponential())
    model.insert(4, orth)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    return classifier(model, optimizer, digit_batches(30))


# -- weight_norm and spectral_norm (torch.nn.utils.parametrizations) ---------------------------------------------------
@program("jik876/hifi-gan: models.py (weight_norm convolutions, leaky ReLU, a generator trained on a regression loss)")
def make_weight_norm_conv1d():
    from torch.nn.utils.parametrizations import weight_norm

    class ResBlock(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.convs = nn.ModuleList([weight_norm(nn.Conv1d(ch, ch, 3, 1, dilation=d, padding=d)) for d in (1, 3)])

        def forward(self, x):
            for c in self.convs:
                x = c(F.leaky_relu(x, 0.1)) + x
            return x

    model = nn.Sequential(
        weight_norm(nn.Conv1d(1, 16, 7, 1, padding=3)),
        ResBlock(16),
        nn.LeakyReLU(0.1),
        weight_norm(nn.Conv1d(16, 1, 7, 1, padding=3)),
        nn.Tanh(),
    )
    t = torch.linspace(0, 1, 64)
    batches = []
    for _ in range(25):
        f = torch.rand(8, 1, 1) * 6 + 2
        clean = 0.8 * torch.sin(2 * math.pi * f * t)
        batches.append((clean + 0.1 * torch.randn_like(clean), clean))
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3, betas=(0.8, 0.99))
    return Program({"model": model}, {"model": optimizer}, supervised_loop(model, optimizer, batches, F.l1_loss))


@program("christiancosgrove/pytorch-spectral-normalization-gan: main.py + model.py (SN-GAN, hinge loss)")
def make_spectral_norm_gan():
    from torch.nn.utils.parametrizations import spectral_norm

    nz = 16
    G = nn.Sequential(nn.Linear(nz, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh())
    D = nn.Sequential(
        spectral_norm(nn.Linear(64, 64)),
        nn.LeakyReLU(0.1),
        spectral_norm(nn.Linear(64, 64)),
        nn.LeakyReLU(0.1),
        spectral_norm(nn.Linear(64, 1)),
    )
    optim_disc = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    optim_gen = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
    batches = [x.flatten(1) * 2 - 1 for x, _ in digit_batches(25, normalize=False)]

    def train(monitors):
        losses = []
        for data in batches:
            z = torch.randn(len(data), nz)
            optim_disc.zero_grad()
            disc_loss = F.relu(1.0 - D(data)).mean() + F.relu(1.0 + D(G(z).detach())).mean()
            disc_loss.backward()
            optim_disc.step()
            optim_disc.zero_grad()
            optim_gen.zero_grad()
            gen_loss = -D(G(z)).mean()
            gen_loss.backward()
            optim_gen.step()
            losses += [disc_loss.detach(), gen_loss.detach()]
            step(monitors, "D", loss_d=disc_loss)
            step(monitors, "G", loss_g=gen_loss)
        return losses

    return Program({"G": G, "D": D}, {"G": optim_gen, "D": optim_disc}, train)


# -- advanced_source/static_quantization_tutorial.py: quantization-aware training (eager mode) -----------------------
class QuantNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool(self.relu(self.bn(self.conv(x))))
        x = self.fc(torch.flatten(x, 1))
        return self.dequant(x)


@program(TUT + "advanced_source/static_quantization_tutorial.py (quantization-aware training)")
def make_qat():
    model = QuantNet()
    model.train()
    model = torch.ao.quantization.fuse_modules_qat(model, [["conv", "bn", "relu"]])
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
    torch.ao.quantization.prepare_qat(model, inplace=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    batches = digit_batches(30)

    def train(monitors):
        losses = []
        for n, (x, y) in enumerate(batches):
            if n == 20:  # the tutorial: freeze observers, then batch-norm statistics, near the end
                model.apply(torch.ao.quantization.disable_observer)
            if n == 24:
                model.apply(torch.nn.intrinsic.qat.freeze_bn_stats)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- pytorch/pytorch docs/source/optim.md: stochastic weight averaging and EMA with AveragedModel --------------------
def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))


@program("pytorch/pytorch: docs/source/optim.md (Stochastic Weight Averaging: AveragedModel, SWALR, update_bn)")
def make_swa():
    from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    swa_model = AveragedModel(model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30)
    swa_start, swa_scheduler = 20, SWALR(optimizer, swa_lr=0.05)
    batches = digit_batches(30)
    prog = Program({"model": model}, {"model": optimizer}, None, copies=[swa_model])

    def train(monitors):
        losses = []
        for epoch, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if epoch > swa_start:
                swa_model.update_parameters(model)
                swa_scheduler.step()
            else:
                scheduler.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        update_bn([x for x, _ in batches[:4]], swa_model)
        losses.append(F.cross_entropy(swa_model(batches[0][0]), batches[0][1]).detach())
        return losses

    prog.train = train
    return prog


@program("pytorch/pytorch: docs/source/optim.md (EMA: AveragedModel with get_ema_multi_avg_fn)")
def make_ema_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ema_model = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    batches = digit_batches(30)
    copies: list[nn.Module] = [ema_model]

    def train(monitors):
        losses = []
        for i, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            ema_model.update_parameters(model)
            if i == 12:  # a mid-training snapshot, as checkpointing code does
                copies.append(copy.deepcopy(model))
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        with torch.no_grad():
            losses.append(F.cross_entropy(ema_model(batches[0][0]), batches[0][1]))
            losses.append(F.cross_entropy(copies[-1](batches[0][0]), batches[0][1]))
        return losses

    return Program({"model": model}, {"model": optimizer}, train, copies=copies)


# -- activation checkpointing: torch.utils.checkpoint -------------------------------------------------------------
@program("pytorch/pytorch: torch/utils/checkpoint.py (checkpoint and checkpoint_sequential, use_reentrant=False)")
def make_activation_checkpointing():
    from torch.utils.checkpoint import checkpoint, checkpoint_sequential

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(64, 64)
            self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.GELU()) for _ in range(4)])
            self.head = nn.Sequential(nn.LayerNorm(64), nn.Dropout(0.1), nn.Linear(64, 10))

        def forward(self, x):
            x = self.stem(x.flatten(1))
            x = checkpoint_sequential(self.blocks, 2, x, use_reentrant=False)
            return checkpoint(self.head, x, use_reentrant=False)

    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    return classifier(model, optimizer, digit_batches(30))


# -- beginner_source/knowledge_distillation_tutorial.py ------------------------------------------------------------
@program(TUT + "beginner_source/knowledge_distillation_tutorial.py (train_knowledge_distillation)")
def make_knowledge_distillation():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10))
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    batches = digit_batches(30)
    t_opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for x, y in batches:  # the teacher is trained first, as in the tutorial
        t_opt.zero_grad()
        F.cross_entropy(teacher(x), y).backward()
        t_opt.step()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    ce_loss, T, soft_w, ce_w = nn.CrossEntropyLoss(), 2.0, 0.25, 0.75

    def train(monitors):
        losses = []
        teacher.eval()
        student.train()
        for inputs, labels in batches:
            optimizer.zero_grad()
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            student_logits = student(inputs)
            soft_targets = F.softmax(teacher_logits / T, dim=-1)
            soft_prob = F.log_softmax(student_logits / T, dim=-1)
            soft_targets_loss = torch.sum(soft_targets * (soft_targets.log() - soft_prob)) / soft_prob.size()[0] * T**2
            label_loss = ce_loss(student_logits, labels)
            loss = soft_w * soft_targets_loss + ce_w * label_loss
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "student", loss=loss)
        return losses

    return Program({"student": student}, {"student": optimizer}, train)


# -- intermediate_source/char_rnn_classification_tutorial.py -------------------------------------------------------
class CharRNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line_tensor):
        rnn_out, hidden = self.rnn(line_tensor)
        return self.softmax(self.h2o(hidden[0]))


@program(TUT + "intermediate_source/char_rnn_classification_tutorial.py")
def make_char_rnn_classification():
    n_letters, n_classes = 20, 4
    tables = [torch.randint(0, n_letters, (n_letters, 2)) for _ in range(n_classes)]  # a "language" per class
    rnn = CharRNN(n_letters, 32, n_classes)
    optimizer = torch.optim.SGD(rnn.parameters(), lr=0.15)
    criterion = nn.NLLLoss()
    batches = []
    for _ in range(30):  # minibatches of names, each a one-hot (length, 1, n_letters) tensor
        labels = torch.randint(0, n_classes, (8,))
        names = [markov_tokens(1, 6, n_letters, tables[int(c)])[0] for c in labels]
        batches.append(([F.one_hot(n, n_letters).float().unsqueeze(1) for n in names], labels))

    def train(monitors):
        losses = []
        rnn.train()
        for names, labels in batches:
            rnn.zero_grad()
            batch_loss = 0
            for name, label in zip(names, labels, strict=False):
                batch_loss = batch_loss + criterion(rnn(name), label.view(1))
            batch_loss = batch_loss / len(names)
            batch_loss.backward()
            nn.utils.clip_grad_norm_(rnn.parameters(), 3)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(batch_loss.detach())
            step(monitors, "rnn", loss=batch_loss)
        return losses

    return Program({"rnn": rnn}, {"rnn": optimizer}, train)


# -- intermediate_source/seq2seq_translation_tutorial.py: GRU encoder, Bahdanau-attention decoder ---------------------
class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        return self.gru(embedded)


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys))).squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        return torch.bmm(weights, keys), weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, max_length, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)
        self.max_length = max_length

    def forward(self, encoder_outputs, encoder_hidden, target_tensor):
        decoder_input = torch.zeros(encoder_outputs.size(0), 1, dtype=torch.long)  # SOS
        decoder_hidden, decoder_outputs = encoder_hidden, []
        for i in range(self.max_length):
            embedded = self.dropout(self.embedding(decoder_input))
            query = decoder_hidden.permute(1, 0, 2)
            context, _ = self.attention(query, encoder_outputs)
            output, decoder_hidden = self.gru(torch.cat((embedded, context), dim=2), decoder_hidden)
            decoder_outputs.append(self.out(output))
            decoder_input = target_tensor[:, i].unsqueeze(1)  # teacher forcing
        return F.log_softmax(torch.cat(decoder_outputs, dim=1), dim=-1), decoder_hidden


@program(TUT + "intermediate_source/seq2seq_translation_tutorial.py")
def make_seq2seq_attention():
    vocab, length = 16, 6
    encoder, decoder = EncoderRNN(vocab, 32), AttnDecoderRNN(32, vocab, length)
    encoder_optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    decoder_optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    criterion = nn.NLLLoss()
    pairs = []
    for _ in range(25):
        src = torch.randint(1, vocab, (16, length))
        pairs.append((src, src.flip(1)))

    def train(monitors):
        losses = []
        for input_tensor, target_tensor in pairs:
            encoder_optimizer.zero_grad()
            decoder_optimizer.zero_grad()
            encoder_outputs, encoder_hidden = encoder(input_tensor)
            decoder_outputs, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
            loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), target_tensor.view(-1))
            loss.backward()
            encoder_optimizer.step()
            decoder_optimizer.step()
            losses.append(loss.detach())
            step(monitors, "encoder", loss=loss)
            step(monitors, "decoder", loss=loss)
        return losses

    return Program(
        {"encoder": encoder, "decoder": decoder}, {"encoder": encoder_optimizer, "decoder": decoder_optimizer}, train
    )


# -- intermediate_source/reinforcement_q_learning.py: DQN, replay memory, soft target update ------------------------
class DQN(nn.Module):
    def __init__(self, n_observations, n_actions):
        super().__init__()
        self.layer1 = nn.Linear(n_observations, 64)
        self.layer2 = nn.Linear(64, 64)
        self.layer3 = nn.Linear(64, n_actions)

    def forward(self, x):
        x = F.relu(self.layer1(x))
        x = F.relu(self.layer2(x))
        return self.layer3(x)


@program(TUT + "intermediate_source/reinforcement_q_learning.py")
def make_dqn_tutorial():
    import random

    BATCH_SIZE, GAMMA, EPS_START, EPS_END, EPS_DECAY, TAU, LR = 32, 0.99, 0.9, 0.05, 200, 0.005, 1e-3
    policy_net, target_net = DQN(4, 2), DQN(4, 2)
    target_net.load_state_dict(policy_net.state_dict())
    optimizer = torch.optim.AdamW(policy_net.parameters(), lr=LR, amsgrad=True)
    env, memory = CartPole(max_steps=50), []
    rng = random.Random(0)

    def train(monitors):
        losses, steps_done = [], 0
        rng.seed(0)
        memory.clear()
        for _ in range(4):
            state, done = env.reset().unsqueeze(0), False
            while not done:
                eps = EPS_END + (EPS_START - EPS_END) * math.exp(-1.0 * steps_done / EPS_DECAY)
                steps_done += 1
                if rng.random() > eps:
                    with torch.no_grad():
                        action = policy_net(state).max(1).indices.view(1, 1)
                else:
                    action = torch.tensor([[rng.randrange(2)]])
                obs, reward, done = env.step(int(action))
                next_state = None if done else obs.unsqueeze(0)
                memory.append((state, action, next_state, torch.tensor([reward])))
                state = next_state
                if len(memory) >= BATCH_SIZE:
                    batch = list(zip(*rng.sample(memory, BATCH_SIZE), strict=False))
                    non_final_mask = torch.tensor([s is not None for s in batch[2]])
                    non_final_next_states = torch.cat([s for s in batch[2] if s is not None])
                    state_batch, action_batch, reward_batch = (
                        torch.cat(batch[0]),
                        torch.cat(batch[1]),
                        torch.cat(batch[3]),
                    )
                    state_action_values = policy_net(state_batch).gather(1, action_batch)
                    next_state_values = torch.zeros(BATCH_SIZE)
                    with torch.no_grad():
                        next_state_values[non_final_mask] = target_net(non_final_next_states).max(1).values
                    expected = (next_state_values * GAMMA) + reward_batch
                    loss = nn.SmoothL1Loss()(state_action_values, expected.unsqueeze(1))
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_value_(policy_net.parameters(), 100)
                    optimizer.step()
                    target_sd, policy_sd = target_net.state_dict(), policy_net.state_dict()
                    for key in policy_sd:
                        target_sd[key] = policy_sd[key] * TAU + target_sd[key] * (1 - TAU)
                    target_net.load_state_dict(target_sd)
                    losses.append(loss.detach())
                    step(monitors, "policy_net", loss=loss)
        return losses

    return Program({"policy_net": policy_net}, {"policy_net": optimizer}, train, copies=[target_net])


# -- beginner_source/nlp/sequence_models_tutorial.py: LSTM part-of-speech tagger --------------------------------------
class LSTMTagger(nn.Module):
    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
        return F.log_softmax(self.hidden2tag(lstm_out.view(len(sentence), -1)), dim=1)


@program(TUT + "beginner_source/nlp/sequence_models_tutorial.py")
def make_lstm_tagger():
    vocab, n_tags = 24, 3
    word_tag = torch.randint(0, n_tags, (vocab,))  # each word has one tag
    model = LSTMTagger(8, 16, vocab, n_tags)
    loss_function = nn.NLLLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    sentences = [torch.randint(0, vocab, (int(torch.randint(4, 9, ())),)) for _ in range(40)]
    return Program(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, [(s, word_tag[s]) for s in sentences], loss_function),
    )


# -- intermediate_source/spatial_transformer_tutorial.py -----------------------------------------------------------
class STNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.MaxPool2d(2, stride=2), nn.ReLU(True)
        )
        self.fc_loc = nn.Sequential(nn.Linear(8 * 4 * 4, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))
        self.fc_loc[2].weight.data.zero_()
        self.fc_loc[2].bias.data.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def stn(self, x):
        xs = self.localization(x).view(-1, 8 * 4 * 4)
        theta = self.fc_loc(xs).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def forward(self, x):
        x = self.stn(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = x.view(-1, 8 * 4 * 4)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


@program(TUT + "intermediate_source/spatial_transformer_tutorial.py")
def make_spatial_transformer():
    model = STNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return classifier(model, optimizer, digit_batches(30), nn.NLLLoss())


# -- intermediate_source/optimizer_step_in_backward_tutorial.py: one optimizer per parameter, stepped in backward ------
@program(TUT + "intermediate_source/optimizer_step_in_backward_tutorial.py")
def make_optimizer_step_in_backward():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer_dict = {p: torch.optim.Adam([p], lr=3e-3, foreach=False) for p in model.parameters()}

    def optimizer_hook(parameter) -> None:
        optimizer_dict[parameter].step()
        optimizer_dict[parameter].zero_grad()

    for p in model.parameters():
        p.register_post_accumulate_grad_hook(optimizer_hook)
    batches = digit_batches(30)

    def train(monitors):
        losses = []
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": None}, train)


# -- beginner_source/examples_nn/dynamic_net.py: a random number of reused middle layers per forward -------------------
class DynamicNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(()))
        self.b = nn.Parameter(torch.randn(()))
        self.c = nn.Parameter(torch.randn(()))
        self.d = nn.Parameter(torch.randn(()))
        self.e = nn.Parameter(torch.randn(()))

    def forward(self, x):
        y = self.a + self.b * x + self.c * x**2 + self.d * x**3
        for exp in range(4, torch.randint(4, 6, ()).item()):
            y = y + self.e * x**exp
        return y


@program(TUT + "beginner_source/examples_nn/dynamic_net.py")
def make_dynamic_net():
    x = torch.linspace(-math.pi, math.pi, 500)
    y = torch.sin(x)
    model = DynamicNet()
    criterion = nn.MSELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-8, momentum=0.9)

    def train(monitors):
        losses = []
        for _ in range(60):
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


@program(TUT + "beginner_source/examples_nn/polynomial_nn.py")
def make_polynomial_nn():
    x = torch.linspace(-math.pi, math.pi, 500)
    y = torch.sin(x)
    xx = x.unsqueeze(-1).pow(torch.tensor([1, 2, 3]))
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))
    loss_fn = nn.MSELoss(reduction="sum")

    def train(monitors):
        losses = []
        for _ in range(80):
            loss = loss_fn(model(xx), y)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for param in model.parameters():
                    param -= 1e-5 * param.grad
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": None}, train)


# -- intermediate_source/mixed_precision_tutorial.py: autocast + GradScaler (CPU: bfloat16) -------------------------
@program(TUT + "intermediate_source/mixed_precision_tutorial.py")
def make_mixed_precision():
    def make_model(in_size, out_size, num_layers):
        layers = []
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(in_size, in_size))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(in_size, out_size))
        return nn.Sequential(*layers)

    net = make_model(64, 10, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    scaler = torch.amp.GradScaler("cpu")
    loss_fn = nn.CrossEntropyLoss()
    batches = [(x.flatten(1), y) for x, y in digit_batches(30)]

    def train(monitors):
        losses = []
        for input, target in batches:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                output = net(input)
                loss = loss_fn(output, target)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step(monitors, "net", loss=loss)
        return losses

    return Program({"net": net}, {"net": opt}, train)


# -- beginner_source/audio_classifier_tutorial.py / speech_command_classification: the M5 1-D conv net ----------------
class M5(nn.Module):
    def __init__(self, n_input=1, n_output=4, stride=4, n_channel=16):
        super().__init__()
        self.conv1 = nn.Conv1d(n_input, n_channel, kernel_size=20, stride=stride)
        self.bn1 = nn.BatchNorm1d(n_channel)
        self.pool1 = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(n_channel, n_channel, kernel_size=3)
        self.bn2 = nn.BatchNorm1d(n_channel)
        self.pool2 = nn.MaxPool1d(2)
        self.conv3 = nn.Conv1d(n_channel, 2 * n_channel, kernel_size=3)
        self.bn3 = nn.BatchNorm1d(2 * n_channel)
        self.pool3 = nn.MaxPool1d(2)
        self.fc1 = nn.Linear(2 * n_channel, n_output)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.bn2(self.conv2(x))))
        x = self.pool3(F.relu(self.bn3(self.conv3(x))))
        x = F.avg_pool1d(x, x.shape[-1]).permute(0, 2, 1)
        return F.log_softmax(self.fc1(x), dim=2)


@program(TUT + "intermediate_source/speech_command_classification_with_torchaudio_tutorial.py (M5)")
def make_speech_m5():
    model = M5()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.0001)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.1)
    t = torch.linspace(0, 1, 400)
    batches = []
    for _ in range(25):  # four "words": tones at four pitches, in noise
        label = torch.randint(0, 4, (16,))
        wave = torch.sin(2 * math.pi * (20 + 15 * label[:, None]) * t) + 0.5 * torch.randn(16, 400)
        batches.append((wave.unsqueeze(1), label))
    return classifier(
        model, optimizer, batches, scheduler=scheduler, loss_fn=lambda out, y: F.nll_loss(out.squeeze(), y)
    )
