"""cleanrl single-file agents (github.com/vwxyzjn/cleanrl), on the bundled CartPole dynamics, scaled down."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from tests.corpus.harness import Program, program, step
from tests.corpus.programs.data import CartPole

SQRT2 = math.sqrt(2)


def layer_init(layer, std=SQRT2, bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(4, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(4, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 2), std=0.01),
        )

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        logits = self.actor(x)
        probs = torch.distributions.Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


@program("vwxyzjn/cleanrl: cleanrl/ppo.py")
def make_cleanrl_ppo():
    num_envs, num_steps, gamma, gae_lambda = 2, 32, 0.99, 0.95
    update_epochs, num_minibatches, clip_coef, ent_coef, vf_coef, max_grad_norm = 2, 2, 0.2, 0.01, 0.5, 0.5
    agent = Agent()
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    envs = [CartPole(max_steps=100) for _ in range(num_envs)]
    num_iterations, batch_size = 4, num_envs * num_steps
    minibatch_size = batch_size // num_minibatches

    def train(monitors):
        losses = []
        obs = torch.zeros((num_steps, num_envs, 4))
        actions, logprobs = torch.zeros((num_steps, num_envs)), torch.zeros((num_steps, num_envs))
        rewards, dones, values = (torch.zeros((num_steps, num_envs)) for _ in range(3))
        next_obs = torch.stack([e.reset() for e in envs])
        next_done = torch.zeros(num_envs)
        for iteration in range(1, num_iterations + 1):
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * 2.5e-4
            for s in range(num_steps):
                obs[s], dones[s] = next_obs, next_done
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                    values[s] = value.flatten()
                actions[s], logprobs[s] = action, logprob
                stepped = [e.step(int(a)) for e, a in zip(envs, action, strict=False)]
                for i, (o, r, d) in enumerate(stepped):
                    rewards[s, i] = r
                    next_obs_i = envs[i].reset() if d else o
                    next_obs[i], next_done[i] = next_obs_i, float(d)
            with torch.no_grad():
                next_value = agent.get_value(next_obs).reshape(1, -1)
                advantages = torch.zeros_like(rewards)
                lastgaelam = 0
                for t in reversed(range(num_steps)):
                    if t == num_steps - 1:
                        nextnonterminal, nextvalues = 1.0 - next_done, next_value
                    else:
                        nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                    delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                    advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
                returns = advantages + values
            b_obs, b_logprobs, b_actions = obs.reshape(-1, 4), logprobs.reshape(-1), actions.reshape(-1)
            b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
            b_inds = np.arange(batch_size)
            for _ in range(update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = b_inds[start : start + minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                        b_obs[mb_inds], b_actions.long()[mb_inds]
                    )
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()
                    mb_advantages = b_advantages[mb_inds]
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                    newvalue = newvalue.view(-1)
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -clip_coef, clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                    entropy_loss = entropy.mean()
                    loss = pg_loss - ent_coef * entropy_loss + v_loss * vf_coef
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                    optimizer.step()
                    losses.append(loss.detach())
                    step(monitors, "agent", loss=loss, policy_loss=pg_loss, value_loss=v_loss)
        return losses

    def seeded(monitors):
        np.random.seed(0)
        return train(monitors)

    return Program({"agent": agent}, {"agent": optimizer}, seeded)


class QNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))

    def forward(self, x):
        return self.network(x)


def linear_schedule(start_e, end_e, duration, t):
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)


@program("vwxyzjn/cleanrl: cleanrl/dqn.py")
def make_cleanrl_dqn():
    import copy

    learning_starts, train_frequency, target_network_frequency, batch_size, gamma, tau = 64, 2, 20, 32, 0.99, 1.0
    q_network = QNetwork()
    optimizer = torch.optim.Adam(q_network.parameters(), lr=2.5e-4)
    target_network = QNetwork()
    target_network.load_state_dict(q_network.state_dict())
    env = CartPole(max_steps=100)
    rng = random.Random(0)
    copies = [target_network]

    def train(monitors):
        losses, rb = [], []
        rng.seed(0)
        obs = env.reset()
        for global_step in range(200):
            epsilon = linear_schedule(1.0, 0.05, 100, global_step)
            if rng.random() < epsilon:
                action = rng.randrange(2)
            else:
                with torch.no_grad():
                    action = int(torch.argmax(q_network(obs), dim=0))
            next_obs, reward, done = env.step(action)
            rb.append((obs, next_obs, action, reward, float(done)))
            obs = env.reset() if done else next_obs
            if global_step > learning_starts and global_step % train_frequency == 0:
                data = rng.sample(rb, batch_size)
                b_obs, b_next = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
                b_act = torch.tensor([d[2] for d in data])
                b_rew, b_done = torch.tensor([d[3] for d in data]), torch.tensor([d[4] for d in data])
                with torch.no_grad():
                    target_max, _ = target_network(b_next).max(dim=1)
                    td_target = b_rew + gamma * target_max * (1 - b_done)
                old_val = q_network(b_obs).gather(1, b_act.unsqueeze(1)).squeeze()
                loss = nn.functional.mse_loss(td_target, old_val)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                step(monitors, "q_network", loss=loss, q_values=old_val.mean())
            if global_step % target_network_frequency == 0:
                for target_param, q_param in zip(target_network.parameters(), q_network.parameters(), strict=False):
                    target_param.data.copy_(tau * q_param.data + (1.0 - tau) * target_param.data)
        copies.append(copy.deepcopy(q_network))  # the script saves the model at the end
        return losses

    return Program({"q_network": q_network}, {"q_network": optimizer}, train, copies=copies)
