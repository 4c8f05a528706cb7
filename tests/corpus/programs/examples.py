"""pytorch/examples, every training example, scaled down (github.com/pytorch/examples, the path in each decorator)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.common import classifier, regression
from tests.corpus.programs.data import (
    CartPole,
    community_graph,
    digit_batches,
    digits,
    markov_tokens,
    normalize_adjacency,
    sine_waves,
)

REPO = "pytorch/examples: "


# -- mnist/main.py -----------------------------------------------------------------------------------------------
class MnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, 1, padding=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


@program(REPO + "mnist/main.py")
def make_mnist():
    model = MnistNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.7)
    return classifier(model, optimizer, digit_batches(30), nn.NLLLoss(), scheduler=scheduler)


# -- mnist_hogwild/train.py: workers share one model, each with its own optimizer ---------------------------------
@program(REPO + "mnist_hogwild/train.py")
def make_mnist_hogwild():
    model = MnistNet()
    model.share_memory()
    workers = [torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5) for _ in range(2)]
    batches = digit_batches(30)

    def train(monitors):
        losses = []
        model.train()
        for i, (x, y) in enumerate(batches):  # the two processes' steps, interleaved
            optimizer = workers[i % 2]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": None}, train)


# -- mnist_rnn/main.py ---------------------------------------------------------------------------------------------
class RowLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(input_size=8, hidden_size=32, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(32)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = x.view(-1, 8, 8)
        x, _ = self.rnn(x)
        x = x[:, -1, :]
        x = self.batchnorm(x)
        x = self.dropout1(x)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


@program(REPO + "mnist_rnn/main.py")
def make_mnist_rnn():
    model = RowLSTM()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=0.5)
    return classifier(model, optimizer, digit_batches(30), nn.NLLLoss())


# -- mnist_forward_forward/main.py: layers trained one by one on positive/negative goodness ------------------------
class FFLayer(nn.Linear):
    def __init__(self, in_features, out_features, threshold=2.0):
        super().__init__(in_features, out_features)
        self.relu = nn.ReLU()
        self.opt = torch.optim.Adam(self.parameters(), lr=0.03)
        self.threshold = threshold

    def forward(self, x):
        x_direction = x / (x.norm(2, 1, keepdim=True) + 1e-4)
        return self.relu(torch.mm(x_direction, self.weight.T) + self.bias.unsqueeze(0))


def overlay_y_on_x(x, y, classes=10):
    x_ = x.clone()
    x_[:, :classes] *= 0.0
    x_[range(x.shape[0]), y] = x.max()
    return x_


@program(REPO + "mnist_forward_forward/main.py")
def make_mnist_forward_forward():
    layers = [FFLayer(64, 48), FFLayer(48, 48)]
    x, y = digits()
    x, y = x[:256].flatten(1), y[:256]
    y_neg = (y + torch.randint(1, 10, y.shape)) % 10
    x_pos, x_neg = overlay_y_on_x(x, y), overlay_y_on_x(x, y_neg)

    def train(monitors):
        losses = []
        h_pos, h_neg = x_pos, x_neg
        for i, layer in enumerate(layers):
            for _ in range(12):
                g_pos = layer(h_pos).pow(2).mean(1)
                g_neg = layer(h_neg).pow(2).mean(1)
                loss = torch.log1p(torch.exp(torch.cat([-g_pos + layer.threshold, g_neg - layer.threshold]))).mean()
                layer.opt.zero_grad()
                loss.backward()
                layer.opt.step()
                losses.append(loss.detach())
                step(monitors, f"layer{i}", loss=loss)
            h_pos, h_neg = layer(h_pos).detach(), layer(h_neg).detach()
        return losses

    return Program(
        {f"layer{i}": m for i, m in enumerate(layers)}, {f"layer{i}": m.opt for i, m in enumerate(layers)}, train
    )


# -- word_language_model/model.py + main.py ---------------------------------------------------------------------
class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.2, tie_weights=True):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)
        self.nhid, self.nlayers = nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


@program(REPO + "word_language_model/main.py")
def make_word_language_model_lstm():
    ntokens, bptt, lr, clip = 30, 12, 5.0, 0.25
    model = RNNModel(ntokens, 24, 24, 2)
    corpus = markov_tokens(1, 16 * 12 * 25 + 1, ntokens).view(-1)
    train_data = batchify(corpus, 16)
    criterion = nn.NLLLoss()

    def train(monitors):
        losses = []
        model.train()
        hidden = model.init_hidden(16)
        for i in range(0, 24 * bptt, bptt):
            seq_len = min(bptt, len(train_data) - 1 - i)
            data, targets = train_data[i : i + seq_len], train_data[i + 1 : i + 1 + seq_len].reshape(-1)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():  # the example's manual SGD
                p.data.add_(p.grad, alpha=-lr)
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": None}, train)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=64):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(0), :])


class TransformerModel(nn.Transformer):
    """word_language_model/model.py's TransformerModel: an encoder-only nn.Transformer with a causal mask."""

    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.1):
        super().__init__(d_model=ninp, nhead=nhead, dim_feedforward=nhid, num_encoder_layers=nlayers, dropout=dropout)
        self.decoder = None
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.input_emb = nn.Embedding(ntoken, ninp)
        self.ninp = ninp
        self.decoder = nn.Linear(ninp, ntoken)
        nn.init.uniform_(self.input_emb.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, src):
        mask = nn.Transformer.generate_square_subsequent_mask(len(src))
        src = self.input_emb(src) * math.sqrt(self.ninp)
        src = self.pos_encoder(src)
        output = self.encoder(src, mask=mask)
        return F.log_softmax(self.decoder(output), dim=-1)


@program(REPO + "word_language_model/model.py (TransformerModel)")
def make_word_language_model_transformer():
    ntokens, bptt = 30, 12
    model = TransformerModel(ntokens, 32, 2, 64, 2)
    train_data = batchify(markov_tokens(1, 16 * 12 * 25 + 1, ntokens).view(-1), 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    criterion = nn.NLLLoss()

    def train(monitors):
        losses = []
        model.train()
        for i in range(0, 24 * bptt, bptt):
            data, targets = train_data[i : i + bptt], train_data[i + 1 : i + 1 + bptt].reshape(-1)
            optimizer.zero_grad()
            output = model(data).view(-1, ntokens)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- dcgan/main.py ---------------------------------------------------------------------------------------------------
def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, nz=16, ngf=16, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 2, 1, 0, bias=False),  # 2x2
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 4x4
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 8x8
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ndf=16, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # 4x4
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # 2x2
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 2, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


@program(REPO + "dcgan/main.py")
def make_dcgan():
    nz = 16
    netG, netD = Generator(nz), Discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    optimizerD = torch.optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
    criterion = nn.BCELoss()
    batches = [x * 2 - 1 for x, _ in digit_batches(25, normalize=False)]

    def train(monitors):
        losses = []
        for real in batches:
            netD.zero_grad()
            label = torch.full((real.size(0),), 1.0)
            output = netD(real)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().detach()
            noise = torch.randn(real.size(0), nz, 1, 1)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            errD = errD_real + errD_fake
            optimizerD.step()
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            optimizerG.step()
            losses += [errD.detach(), errG.detach()]
            step(monitors, "netD", loss=errD, D_x=D_x)
            step(monitors, "netG", loss=errG)
        return losses

    return Program({"netG": netG, "netD": netD}, {"netG": optimizerG, "netD": optimizerD}, train)


# -- vae/main.py ---------------------------------------------------------------------------------------------------
class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 48)
        self.fc21 = nn.Linear(48, 8)
        self.fc22 = nn.Linear(48, 8)
        self.fc3 = nn.Linear(8, 48)
        self.fc4 = nn.Linear(48, 64)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 64))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def vae_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 64), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


@program(REPO + "vae/main.py")
def make_vae():
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [x for x, _ in digit_batches(30, normalize=False)]

    def train(monitors):
        losses = []
        model.train()
        for data in batches:
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = vae_loss(recon, data, mu, logvar)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- super_resolution/model.py + main.py ---------------------------------------------------------------------------
class SuperResolutionNet(nn.Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 32, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(32, 32, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(32, 16, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(16, upscale_factor**2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        nn.init.orthogonal_(self.conv1.weight, nn.init.calculate_gain("relu"))
        nn.init.orthogonal_(self.conv2.weight, nn.init.calculate_gain("relu"))
        nn.init.orthogonal_(self.conv3.weight, nn.init.calculate_gain("relu"))
        nn.init.orthogonal_(self.conv4.weight)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


@program(REPO + "super_resolution/main.py")
def make_super_resolution():
    model = SuperResolutionNet(upscale_factor=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    batches = [(F.avg_pool2d(x, 2), x) for x, _ in digit_batches(30, normalize=False)]
    return regression(model, optimizer, batches)


# -- fast_neural_style/neural_style/transformer_net.py + neural_style.py ----------------------------------------------
class ConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv1 = ConvLayer(3, c, kernel_size=5, stride=1)
        self.in1 = nn.InstanceNorm2d(c, affine=True)
        self.conv2 = ConvLayer(c, 2 * c, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(2 * c, affine=True)
        self.res1 = ResidualBlock(2 * c)
        self.res2 = ResidualBlock(2 * c)
        self.deconv1 = UpsampleConvLayer(2 * c, c, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(c, affine=True)
        self.deconv3 = ConvLayer(c, 3, kernel_size=5, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.res2(self.res1(y))
        y = self.relu(self.in4(self.deconv1(y)))
        return self.deconv3(y)


def gram_matrix(y):
    b, ch, h, w = y.size()
    features = y.view(b, ch, w * h)
    return features.bmm(features.transpose(1, 2)) / (ch * h * w)


@program(REPO + "fast_neural_style/neural_style/neural_style.py")
def make_fast_neural_style():
    transformer = TransformerNet()
    optimizer = torch.optim.Adam(transformer.parameters(), 1e-3)
    vgg = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    vgg.requires_grad_(False)  # the frozen loss network (VGG16 features in the example)
    style = torch.rand(1, 3, 16, 16)
    gram_style = gram_matrix(vgg(style))
    images = [torch.rand(4, 3, 16, 16) * 255 for _ in range(20)]
    content_weight, style_weight = 1e0, 1e3

    def train(monitors):
        losses = []
        transformer.train()
        for x in images:
            optimizer.zero_grad()
            y = transformer(x / 255)
            features_y, features_x = vgg(y), vgg(x / 255)
            content_loss = content_weight * F.mse_loss(features_y, features_x)
            style_loss = style_weight * F.mse_loss(gram_matrix(features_y), gram_style.expand(len(x), -1, -1))
            total_loss = content_loss + style_loss
            total_loss.backward()
            optimizer.step()
            losses.append(total_loss.detach())
            step(monitors, "transformer", loss=total_loss)
        return losses

    return Program({"transformer": transformer}, {"transformer": optimizer}, train)


# -- siamese_network/main.py -----------------------------------------------------------------------------------------
class SiameseNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(128, 32),
        )
        self.fc = nn.Sequential(nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))
        self.sigmoid = nn.Sigmoid()

    def forward_once(self, x):
        return self.features(x)

    def forward(self, input1, input2):
        output = torch.cat((self.forward_once(input1), self.forward_once(input2)), 1)
        return self.sigmoid(self.fc(output))


@program(REPO + "siamese_network/main.py")
def make_siamese_network():
    model = SiameseNetwork()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.98)
    criterion = nn.BCELoss()
    x, y = digits()
    pairs = []
    for _ in range(40):  # half same-class pairs, like the example's dataset
        i = torch.randint(0, len(x), (16,))
        same = torch.rand(16) < 0.5
        j = torch.stack(
            [
                torch.nonzero((y == y[a]) == s)[torch.randint(0, int(((y == y[a]) == s).sum()), ())].squeeze()
                for a, s in zip(i, same, strict=False)
            ]
        )
        pairs.append((x[i], x[j], same.float()))

    def train(monitors):
        losses = []
        model.train()
        for images_1, images_2, targets in pairs:
            optimizer.zero_grad()
            outputs = model(images_1, images_2).squeeze()
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- reinforcement_learning/reinforce.py and actor_critic.py ---------------------------------------------------------
class Policy(nn.Module):
    def __init__(self, critic=False):
        super().__init__()
        self.affine1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(p=0.6) if not critic else None
        self.action_head = nn.Linear(128, 2)
        self.value_head = nn.Linear(128, 1) if critic else None

    def forward(self, x):
        x = self.affine1(x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = F.relu(x)
        scores = F.softmax(self.action_head(x), dim=-1)
        return scores if self.value_head is None else (scores, self.value_head(x))


@program(REPO + "reinforcement_learning/reinforce.py")
def make_reinforce():
    policy = Policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    env, gamma, eps = CartPole(max_steps=60), 0.99, 1e-6

    def train(monitors):
        losses = []
        for _ in range(12):
            state, log_probs, rewards = env.reset(), [], []
            done = False
            while not done:
                probs = policy(state.unsqueeze(0))
                m = torch.distributions.Categorical(probs)
                action = m.sample()
                log_probs.append(m.log_prob(action))
                state, reward, done = env.step(int(action))
                rewards.append(reward)
            R, returns = 0.0, []
            for r in rewards[::-1]:
                R = r + gamma * R
                returns.insert(0, R)
            returns = torch.tensor(returns)
            returns = (returns - returns.mean()) / (returns.std() + eps)
            policy_loss = torch.cat([-lp * R for lp, R in zip(log_probs, returns, strict=False)]).sum()
            optimizer.zero_grad()
            policy_loss.backward()
            optimizer.step()
            losses.append(policy_loss.detach())
            step(monitors, "policy", loss=policy_loss, reward=sum(rewards))
        return losses

    return Program({"policy": policy}, {"policy": optimizer}, train)


@program(REPO + "reinforcement_learning/actor_critic.py")
def make_actor_critic():
    model = Policy(critic=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    env, gamma, eps = CartPole(max_steps=60), 0.99, 1e-6

    def train(monitors):
        losses = []
        for _ in range(12):
            state, saved, rewards, done = env.reset(), [], [], False
            while not done:
                probs, state_value = model(state)
                m = torch.distributions.Categorical(probs)
                action = m.sample()
                saved.append((m.log_prob(action), state_value))
                state, reward, done = env.step(int(action))
                rewards.append(reward)
            R, returns = 0.0, []
            for r in rewards[::-1]:
                R = r + gamma * R
                returns.insert(0, R)
            returns = torch.tensor(returns)
            returns = (returns - returns.mean()) / (returns.std() + eps)
            policy_losses, value_losses = [], []
            for (log_prob, value), R in zip(saved, returns, strict=False):
                advantage = R - value.item()
                policy_losses.append(-log_prob * advantage)
                value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
            optimizer.zero_grad()
            loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss, reward=sum(rewards))
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- time_sequence_prediction/train.py: LSTMCells, float64, LBFGS with a closure ------------------------------------
class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 24)
        self.lstm2 = nn.LSTMCell(24, 24)
        self.linear = nn.Linear(24, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), 24, dtype=torch.double)
        c_t = torch.zeros(input.size(0), 24, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), 24, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), 24, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


@program(REPO + "time_sequence_prediction/train.py")
def make_time_sequence_prediction():
    data = sine_waves(20, 30)
    input, target = data[3:, :-1], data[3:, 1:]
    seq = Sequence().double()
    criterion = nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=4)

    def train(monitors):
        losses = []
        for _ in range(4):

            def closure():
                optimizer.zero_grad()
                out = seq(input)
                loss = criterion(out, target)
                loss.backward()
                return loss

            loss = optimizer.step(closure)
            losses.append(loss.detach())
            step(monitors, "seq", loss=loss)
        return losses

    return Program({"seq": seq}, {"seq": optimizer}, train)


# -- gcn/main.py and gat/main.py ---------------------------------------------------------------------------------------
class GraphConv(nn.Module):
    def __init__(self, input_dim, output_dim, use_bias=False):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(input_dim, output_dim))
        nn.init.xavier_normal_(self.kernel)
        self.bias = nn.Parameter(torch.zeros(output_dim)) if use_bias else None

    def forward(self, input_tensor, adj_mat):
        support = torch.mm(input_tensor, self.kernel)
        output = torch.spmm(adj_mat, support)
        return output + self.bias if self.bias is not None else output


class GCN(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, use_bias=True, dropout_p=0.1):
        super().__init__()
        self.gc1 = GraphConv(input_dim, hidden_dim, use_bias=use_bias)
        self.gc2 = GraphConv(hidden_dim, output_dim, use_bias=use_bias)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input_tensor, adj_mat):
        x = F.relu(self.gc1(input_tensor, adj_mat))
        x = self.dropout(x)
        return self.gc2(x, adj_mat)


@program(REPO + "gcn/main.py")
def make_gcn():
    feats, adj, labels, mask = community_graph()
    adj = normalize_adjacency(adj).to_sparse()
    model = GCN(feats.shape[1], 16, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    criterion = nn.NLLLoss()

    def train(monitors):
        losses = []
        for _ in range(30):
            model.train()
            optimizer.zero_grad()
            output = F.log_softmax(model(feats, adj), dim=1)
            loss = criterion(output[mask], labels[mask])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


class GraphAttentionLayer(nn.Module):
    def __init__(self, in_features, out_features, n_heads, concat=False, dropout=0.4, leaky_relu_slope=0.2):
        super().__init__()
        self.n_heads, self.concat, self.dropout = n_heads, concat, dropout
        self.n_hidden = out_features // n_heads if concat else out_features
        self.W = nn.Parameter(torch.empty(in_features, self.n_hidden * n_heads))
        self.a = nn.Parameter(torch.empty(n_heads, 2 * self.n_hidden, 1))
        self.leakyrelu = nn.LeakyReLU(leaky_relu_slope)
        self.softmax = nn.Softmax(dim=1)
        nn.init.xavier_normal_(self.W)
        nn.init.xavier_normal_(self.a)

    def forward(self, h, adj_mat):
        n_nodes = h.shape[0]
        h_transformed = torch.mm(h, self.W)
        h_transformed = F.dropout(h_transformed, self.dropout, training=self.training)
        h_transformed = h_transformed.view(n_nodes, self.n_heads, self.n_hidden).permute(1, 0, 2)
        source = torch.matmul(h_transformed, self.a[:, : self.n_hidden, :])
        target = torch.matmul(h_transformed, self.a[:, self.n_hidden :, :])
        e = self.leakyrelu(source + target.mT)
        connectivity_mask = -9e16 * torch.ones_like(e)
        e = torch.where(adj_mat > 0, e, connectivity_mask)
        attention = F.softmax(e, dim=-1)
        attention = F.dropout(attention, self.dropout, training=self.training)
        h_prime = torch.matmul(attention, h_transformed)
        return h_prime.permute(1, 0, 2).contiguous().view(n_nodes, -1) if self.concat else h_prime.mean(dim=0)


class GAT(nn.Module):
    def __init__(self, in_features, n_hidden, n_heads, num_classes, dropout=0.4):
        super().__init__()
        self.gat1 = GraphAttentionLayer(in_features, n_hidden, n_heads, concat=True, dropout=dropout)
        self.gat2 = GraphAttentionLayer(n_hidden, num_classes, 1, concat=False, dropout=dropout)

    def forward(self, input_tensor, adj_mat):
        x = F.elu(self.gat1(input_tensor, adj_mat))
        return F.log_softmax(self.gat2(x, adj_mat), dim=1)


@program(REPO + "gat/main.py")
def make_gat():
    feats, adj, labels, mask = community_graph()
    model = GAT(feats.shape[1], 16, 4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)
    criterion = nn.NLLLoss()

    def train(monitors):
        losses = []
        for _ in range(30):
            model.train()
            optimizer.zero_grad()
            loss = criterion(model(feats, adj)[mask], labels[mask])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- regression/main.py: fit a polynomial with a single Linear, manual SGD -------------------------------------------
@program(REPO + "regression/main.py")
def make_regression():
    poly_degree = 4
    w_target = torch.randn(poly_degree, 1) * 5
    b_target = torch.randn(1) * 5

    def make_features(x):
        x = x.unsqueeze(1)
        return torch.cat([x**i for i in range(1, poly_degree + 1)], 1)

    fc = nn.Linear(w_target.size(0), 1)

    def train(monitors):
        losses = []
        for _ in range(60):
            random = torch.randn(32)
            batch_x = make_features(random)
            batch_y = batch_x.mm(w_target) + b_target.item()
            fc.zero_grad()
            output = F.smooth_l1_loss(fc(batch_x), batch_y)
            output.backward()
            for param in fc.parameters():
                param.data.add_(-0.1 * param.grad)
            losses.append(output.detach())
            step(monitors, "fc", loss=output)
        return losses

    return Program({"fc": fc}, {"fc": None}, train)


# -- imagenet/main.py: a ResNet (BasicBlock) with SGD, momentum, weight decay, StepLR ----------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.resnet's structure (zero_init_residual=False), two stages."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
        self.layer2 = BasicBlock(width, 2 * width, 2, down)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@program(REPO + "imagenet/main.py")
def make_imagenet_resnet():
    model = ResNet()
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    return classifier(model, optimizer, digit_batches(25), scheduler=scheduler)


# -- language_translation/src/model.py: nn.Transformer encoder-decoder, teacher forcing --------------------------------
class Translator(nn.Module):
    def __init__(self, src_vocab, tgt_vocab, d_model=32):
        super().__init__()
        self.src_embedding = nn.Embedding(src_vocab, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab, d_model)
        self.pos_enc = PositionalEncoding(d_model, 0.1)
        self.transformer = nn.Transformer(d_model, 2, 1, 1, 64, 0.1)
        self.ff = nn.Linear(d_model, tgt_vocab)

    def forward(self, src, tgt, tgt_mask, src_pad_mask, tgt_pad_mask):
        src = self.pos_enc(self.src_embedding(src))
        tgt = self.pos_enc(self.tgt_embedding(tgt))
        out = self.transformer(
            src,
            tgt,
            tgt_mask=tgt_mask,
            src_key_padding_mask=src_pad_mask,
            tgt_key_padding_mask=tgt_pad_mask,
            memory_key_padding_mask=src_pad_mask,
        )
        return self.ff(out)


@program(REPO + "language_translation/main.py")
def make_language_translation():
    vocab, bos, pad = 20, 1, 0
    model = Translator(vocab, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    loss_fn = nn.CrossEntropyLoss(ignore_index=pad)
    pairs = []
    for _ in range(25):  # "translation": the reversed sequence, shifted by one token id
        src = torch.randint(2, vocab - 1, (8, 16))
        tgt = torch.cat([torch.full((1, 16), bos), src.flip(0) + 1])
        pairs.append((src, tgt))

    def train(monitors):
        losses = []
        model.train()
        for src, tgt in pairs:
            tgt_input = tgt[:-1, :]
            tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt_input.size(0))
            logits = model(src, tgt_input, tgt_mask, (src == pad).T, (tgt_input == pad).T)
            optimizer.zero_grad()
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt[1:, :].reshape(-1))
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)
