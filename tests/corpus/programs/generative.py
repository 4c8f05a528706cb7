"""Generative and continuous-time models: DDPM, WGAN-GP, U-Net, neural ODEs, RealNVP (sources in each decorator)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.data import digit_batches, two_moons


# -- DDPM: a small U-Net predicting the noise (lucidrains/denoising-diffusion-pytorch) --------------------------------
class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        half = self.dim // 2
        emb = math.log(10000) / (half - 1)
        emb = torch.exp(torch.arange(half) * -emb)
        emb = x[:, None] * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class ResnetBlock(nn.Module):
    def __init__(self, dim, dim_out, time_emb_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2))
        self.proj1, self.norm1 = nn.Conv2d(dim, dim_out, 3, padding=1), nn.GroupNorm(4, dim_out)
        self.proj2, self.norm2 = nn.Conv2d(dim_out, dim_out, 3, padding=1), nn.GroupNorm(4, dim_out)
        self.act = nn.SiLU()
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb):
        scale, shift = self.mlp(time_emb)[:, :, None, None].chunk(2, dim=1)
        h = self.act(self.norm1(self.proj1(x)) * (scale + 1) + shift)
        h = self.act(self.norm2(self.proj2(h)))
        return h + self.res_conv(x)


class TinyUnet(nn.Module):
    def __init__(self, dim=8, channels=1):
        super().__init__()
        self.init_conv = nn.Conv2d(channels, dim, 7, padding=3)
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim * 4)
        )
        self.down = ResnetBlock(dim, dim, dim * 4)
        self.downsample = nn.Conv2d(dim, dim * 2, 4, 2, 1)
        self.mid = ResnetBlock(dim * 2, dim * 2, dim * 4)
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim * 2, dim, 3, padding=1)
        )
        self.up = ResnetBlock(dim * 2, dim, dim * 4)
        self.final_conv = nn.Conv2d(dim, channels, 1)

    def forward(self, x, time):
        x = self.init_conv(x)
        t = self.time_mlp(time)
        h = self.down(x, t)
        m = self.mid(self.downsample(h), t)
        u = self.up(torch.cat((self.upsample(m), h), dim=1), t)
        return self.final_conv(u)


@program(
    "lucidrains/denoising-diffusion-pytorch: denoising_diffusion_pytorch/denoising_diffusion_pytorch.py "
    " (GaussianDiffusion.p_losses, Trainer)"
)
def make_ddpm():
    timesteps = 100
    betas = torch.linspace(1e-4, 0.02, timesteps)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sqrt_ac, sqrt_1m_ac = alphas_cumprod.sqrt(), (1.0 - alphas_cumprod).sqrt()
    model = TinyUnet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    images = [x * 2 - 1 for x, _ in digit_batches(20, batch=16, normalize=False)]

    def train(monitors):
        losses = []
        for x_start in images:
            t = torch.randint(0, timesteps, (x_start.shape[0],)).long()
            noise = torch.randn_like(x_start)
            x = sqrt_ac[t][:, None, None, None] * x_start + sqrt_1m_ac[t][:, None, None, None] * noise
            loss = F.mse_loss(model(x, t.float()), noise)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": opt}, train)


# -- WGAN-GP (eriklindernoren/PyTorch-GAN: implementations/wgan_gp/wgan_gp.py) ----------------------------------------
@program("eriklindernoren/PyTorch-GAN: implementations/wgan_gp/wgan_gp.py")
def make_wgan_gp():
    latent_dim, n_critic, lambda_gp = 8, 5, 10

    def block(in_feat, out_feat, normalize=True):
        layers = [nn.Linear(in_feat, out_feat)]
        if normalize:
            layers.append(nn.BatchNorm1d(out_feat, 0.8))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        return layers

    generator = nn.Sequential(*block(latent_dim, 32, normalize=False), *block(32, 64), nn.Linear(64, 64), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Linear(64, 64),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(64, 32),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(32, 1),
    )
    optimizer_G = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_D = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = [x.flatten(1) * 2 - 1 for x, _ in digit_batches(40, batch=32, normalize=False)]

    def compute_gradient_penalty(D, real_samples, fake_samples):
        alpha = torch.rand(real_samples.size(0), 1)
        interpolates = (alpha * real_samples + ((1 - alpha) * fake_samples)).requires_grad_(True)
        d_interpolates = D(interpolates)
        fake = torch.ones(real_samples.shape[0], 1)
        gradients = torch.autograd.grad(
            outputs=d_interpolates,
            inputs=interpolates,
            grad_outputs=fake,
            create_graph=True,
            retain_graph=True,
            only_inputs=True,
        )[0]
        return ((gradients.view(gradients.size(0), -1).norm(2, dim=1) - 1) ** 2).mean()

    def train(monitors):
        losses = []
        for i, real_imgs in enumerate(batches):
            optimizer_D.zero_grad()
            z = torch.randn(real_imgs.shape[0], latent_dim)
            fake_imgs = generator(z)
            real_validity, fake_validity = discriminator(real_imgs), discriminator(fake_imgs)
            gradient_penalty = compute_gradient_penalty(discriminator, real_imgs.data, fake_imgs.data)
            d_loss = -torch.mean(real_validity) + torch.mean(fake_validity) + lambda_gp * gradient_penalty
            d_loss.backward()
            optimizer_D.step()
            optimizer_G.zero_grad()
            losses.append(d_loss.detach())
            step(monitors, "discriminator", d_loss=d_loss)
            if i % n_critic == 0:
                fake_imgs = generator(z)
                g_loss = -torch.mean(discriminator(fake_imgs))
                g_loss.backward()
                optimizer_G.step()
                losses.append(g_loss.detach())
                step(monitors, "generator", g_loss=g_loss)
        return losses

    return Program(
        {"generator": generator, "discriminator": discriminator},
        {"generator": optimizer_G, "discriminator": optimizer_D},
        train,
    )


# -- U-Net segmentation (milesial/Pytorch-UNet: unet/unet_parts.py, train.py with CE + Dice loss) ---------------------
class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels=1, n_classes=2, c=8):
        super().__init__()
        self.inc = DoubleConv(n_channels, c)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(c, 2 * c))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(2 * c, 4 * c))
        self.up1 = nn.ConvTranspose2d(4 * c, 2 * c, kernel_size=2, stride=2)
        self.conv1 = DoubleConv(4 * c, 2 * c)
        self.up2 = nn.ConvTranspose2d(2 * c, c, kernel_size=2, stride=2)
        self.conv2 = DoubleConv(2 * c, c)
        self.outc = nn.Conv2d(c, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x = self.conv1(torch.cat([x2, self.up1(x3)], dim=1))
        x = self.conv2(torch.cat([x1, self.up2(x)], dim=1))
        return self.outc(x)


def dice_loss(probs, target_one_hot, epsilon=1e-6):
    inter = 2 * (probs * target_one_hot).sum(dim=(-1, -2))
    sets_sum = probs.sum(dim=(-1, -2)) + target_one_hot.sum(dim=(-1, -2))
    return 1 - ((inter + epsilon) / (sets_sum + epsilon)).mean()


@program("milesial/Pytorch-UNet: train.py + unet/unet_model.py")
def make_unet_segmentation():
    model = UNet()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.999, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", patience=5)
    criterion = nn.CrossEntropyLoss()
    batches = []
    for x, _ in digit_batches(25, batch=16, normalize=False):
        image = F.interpolate(x, scale_factor=2) + 0.2 * torch.randn(16, 1, 16, 16)
        mask = (F.interpolate(x, scale_factor=2) > 0.4).long().squeeze(1)
        batches.append((image, mask))

    def train(monitors):
        losses = []
        model.train()
        for images, true_masks in batches:
            masks_pred = model(images)
            loss = criterion(masks_pred, true_masks)
            loss = loss + dice_loss(F.softmax(masks_pred, dim=1), F.one_hot(true_masks, 2).permute(0, 3, 1, 2).float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step(-loss.detach())
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)


# -- torchdiffeq examples/ode_demo.py: fit the dynamics of a spiral with a neural ODE (RK4, as odeint(method="rk4")) --
class ODEFunc(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0, std=0.1)
                nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y**3)


def odeint_rk4(func, y0, t):
    """Fixed-grid RK4 on the points of ``t`` (torchdiffeq's ``odeint(func, y0, t, method="rk4")`` on that grid)."""
    ys = [y0]
    y = y0
    for t0, t1 in zip(t[:-1], t[1:], strict=False):
        dt = t1 - t0
        k1 = func(t0, y)
        k2 = func(t0 + dt / 2, y + dt * k1 / 2)
        k3 = func(t0 + dt / 2, y + dt * k2 / 2)
        k4 = func(t1, y + dt * k3)
        y = y + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        ys.append(y)
    return torch.stack(ys)


@program("rtqichen/torchdiffeq: examples/ode_demo.py")
def make_neural_ode_spiral():
    data_size, batch_time, batch_size = 200, 10, 16
    true_y0 = torch.tensor([[2.0, 0.0]])
    t = torch.linspace(0.0, 5.0, data_size)
    true_A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])
    with torch.no_grad():
        true_y = odeint_rk4(lambda t, y: torch.mm(y**3, true_A), true_y0, t)
    func = ODEFunc()
    optimizer = torch.optim.RMSprop(func.parameters(), lr=1e-3)

    def get_batch():
        s = torch.from_numpy(
            __import__("numpy").random.choice(
                __import__("numpy").arange(data_size - batch_time, dtype=__import__("numpy").int64),
                batch_size,
                replace=False,
            )
        )
        batch_y0 = true_y[s]
        batch_t = t[:batch_time]
        batch_y = torch.stack([true_y[s + i] for i in range(batch_time)], dim=0)
        return batch_y0, batch_t, batch_y

    def train(monitors):
        import numpy as np

        np.random.seed(0)
        losses = []
        for _ in range(20):
            optimizer.zero_grad()
            batch_y0, batch_t, batch_y = get_batch()
            pred_y = odeint_rk4(func, batch_y0, batch_t)
            loss = torch.mean(torch.abs(pred_y - batch_y))
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "func", loss=loss)
        return losses

    return Program({"func": func}, {"func": optimizer}, train)


# -- RealNVP on two moons (the coupling-layer flow of senya-ashukha/real-nvp-pytorch: real-nvp-pytorch.ipynb) ---------
class RealNVP(nn.Module):
    def __init__(self, nets, nett, mask, prior):
        super().__init__()
        self.prior = prior
        self.register_buffer("mask", mask)
        self.t = nn.ModuleList([nett() for _ in range(len(mask))])
        self.s = nn.ModuleList([nets() for _ in range(len(mask))])

    def f(self, x):
        log_det_J, z = x.new_zeros(x.shape[0]), x
        for i in reversed(range(len(self.t))):
            z_ = self.mask[i] * z
            s = self.s[i](z_) * (1 - self.mask[i])
            t = self.t[i](z_) * (1 - self.mask[i])
            z = (1 - self.mask[i]) * (z - t) * torch.exp(-s) + z_
            log_det_J -= s.sum(dim=1)
        return z, log_det_J

    def log_prob(self, x):
        z, logp = self.f(x)
        return self.prior.log_prob(z) + logp


@program("senya-ashukha/real-nvp-pytorch: real-nvp-pytorch.ipynb (RealNVP on make_moons)")
def make_realnvp_moons():
    def nets():
        return nn.Sequential(
            nn.Linear(2, 64), nn.LeakyReLU(), nn.Linear(64, 64), nn.LeakyReLU(), nn.Linear(64, 2), nn.Tanh()
        )

    def nett():
        return nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(), nn.Linear(64, 64), nn.LeakyReLU(), nn.Linear(64, 2))

    masks = torch.tensor([[0, 1], [1, 0]] * 3, dtype=torch.float32)
    prior = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    flow = RealNVP(nets, nett, masks, prior)
    optimizer = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=1e-3)
    batches = [two_moons(100, noise=0.05)[0] for _ in range(30)]

    def train(monitors):
        losses = []
        for x in batches:
            loss = -flow.log_prob(x).mean()
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "flow", loss=loss)
        return losses

    return Program({"flow": flow}, {"flow": optimizer}, train)


# -- a variational autoencoder with a convolutional encoder (AntixK/PyTorch-VAE: models/vanilla_vae.py) ---------------
@program("AntixK/PyTorch-VAE: models/vanilla_vae.py + experiment.py (kld_weight, Adam, ExponentialLR)")
def make_conv_vae():
    class VanillaVAE(nn.Module):
        def __init__(self, latent_dim=8):
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(1, 16, 3, 2, 1),
                nn.BatchNorm2d(16),
                nn.LeakyReLU(),
                nn.Conv2d(16, 32, 3, 2, 1),
                nn.BatchNorm2d(32),
                nn.LeakyReLU(),
            )
            self.fc_mu, self.fc_var = nn.Linear(32 * 4, latent_dim), nn.Linear(32 * 4, latent_dim)
            self.decoder_input = nn.Linear(latent_dim, 32 * 4)
            self.decoder = nn.Sequential(
                nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), nn.BatchNorm2d(16), nn.LeakyReLU()
            )
            self.final_layer = nn.Sequential(
                nn.ConvTranspose2d(16, 16, 3, 2, 1, output_padding=1),
                nn.BatchNorm2d(16),
                nn.LeakyReLU(),
                nn.Conv2d(16, 1, 3, padding=1),
                nn.Tanh(),
            )

        def forward(self, x):
            h = torch.flatten(self.encoder(x), 1)
            mu, log_var = self.fc_mu(h), self.fc_var(h)
            z = torch.randn_like(mu) * torch.exp(0.5 * log_var) + mu
            out = self.final_layer(self.decoder(self.decoder_input(z).view(-1, 32, 2, 2)))
            return F.interpolate(out, size=8), mu, log_var

    model = VanillaVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)
    images = [x * 2 - 1 for x, _ in digit_batches(30, normalize=False)]

    def train(monitors):
        losses = []
        for x in images:
            recons, mu, log_var = model(x)
            kld_weight = 32 / 1797
            recons_loss = F.mse_loss(recons, x)
            kld_loss = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1), dim=0)
            loss = recons_loss + kld_weight * kld_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Program({"model": model}, {"model": optimizer}, train)
