"""The arithmetic of the GRPO loss (flowrl.policy.grpo_trainer): per-token advantages from group-normalised rewards
(quality groups: only the flows that count set a group's mean and std), the share of the reward variance those carry,
and log-probs renormalised over the tokens constrained decoding allowed."""

from __future__ import annotations

import torch

ADV_EPS = 1e-4  # trl's epsilon in (R - mean) / (std + eps)


def group_token_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    num_generations: int,
    eps: float = ADV_EPS,
    counted: torch.Tensor | None = None,
    fallback: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token advantages with the group baseline, shape (B, T); zero on padding.

    Consecutive rows form groups of G = `num_generations` completions of one prompt. Each counted
    completion weighs equally in its group's statistics and its tokens share that weight equally:
    m_i = mean_t R_i(t), mu = mean_i m_i, sigma^2 = 1/(n-1) * sum_i mean_t (R_i(t) - mu)^2 over the n counted rows,
    A_i(t) = (R_i(t) - mu) / (sigma + eps). With every row counted and R_i(t) = R_i for every t this is exactly
    trl's sequence advantage (R_i - mean) / (std + eps) (Bessel-corrected std) on every token.

    Args:
        rewards: (B, T) per-token rewards, B a multiple of G.
        mask: (B, T) 1 on completion tokens, 0 on padding.
        counted: (B,) rows that enter their group's mean and std (default: all). Rows left out (uncertain or
            invalid flows) take `fallback` instead of an advantage measured against the others; a counted row
            alone in its group gets 0.
        fallback: (B,) advantage of each row not counted (default 0).

    >>> group_token_advantages(torch.tensor([[1.0, 1.0], [3.0, 0.0]]), torch.tensor([[1, 1], [1, 0]]), 2, eps=0.0)
    tensor([[-0.7071, -0.7071],
            [ 0.7071,  0.0000]])
    >>> group_token_advantages(torch.tensor([[1.0], [3.0], [0.0], [5.0]]), torch.ones(4, 1), 4, eps=0.0,
    ...                        counted=torch.tensor([True, True, False, True]), fallback=torch.tensor([0.0, 0.0, -1.0, 0.0])).squeeze(1)
    tensor([-1.,  0., -1.,  1.])
    """
    if rewards.shape != mask.shape or rewards.shape[0] % num_generations:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and mask {tuple(mask.shape)} must match and B must divide by {num_generations}"
        )
    counted = torch.ones(rewards.shape[0], dtype=torch.bool) if counted is None else counted.bool().to(rewards.device)
    fallback = torch.zeros(rewards.shape[0]) if fallback is None else fallback
    mask = mask.to(rewards.dtype)
    weight = counted.to(rewards.dtype).view(-1, num_generations)
    n = weight.sum(1)
    n_tokens = mask.sum(1).clamp(min=1)
    row_mean = (rewards * mask).sum(1) / n_tokens
    mu = ((row_mean.view(-1, num_generations) * weight).sum(1) / n.clamp(min=1)).repeat_interleave(num_generations)
    spread = (((rewards - mu[:, None]) ** 2) * mask).sum(1) / n_tokens
    sigma = (
        ((spread.view(-1, num_generations) * weight).sum(1) / (n - 1).clamp(min=1))
        .sqrt()
        .repeat_interleave(num_generations)
    )
    alone = (n < 2).repeat_interleave(num_generations)
    adv = torch.where(alone[:, None], torch.zeros_like(rewards), (rewards - mu[:, None]) / (sigma[:, None] + eps))
    adv = torch.where(counted[:, None], adv, fallback.to(rewards.dtype).to(rewards.device)[:, None].expand_as(rewards))
    return torch.where(mask.bool(), adv, torch.zeros_like(rewards))


def left_out_advantages(valid: torch.Tensor, uncertain_advantage: float, invalid_advantage: float) -> torch.Tensor:
    """(B,) advantages of the rows left out of their group's statistics: usable flows the ensemble is unsure of get
    `uncertain_advantage`, flows that are not usable `invalid_advantage` (the `fallback` of `group_token_advantages`).

    >>> left_out_advantages(torch.tensor([True, False]), -0.5, -1.0).tolist()
    [-0.5, -1.0]
    """
    return torch.where(
        valid.bool(),
        torch.full(valid.shape, float(uncertain_advantage)),
        torch.full(valid.shape, float(invalid_advantage)),
    )


def quality_variance_share(rewards: torch.Tensor, counted: torch.Tensor, num_generations: int) -> float:
    """Share of the within-group variance of the shaped rewards (B,) that lies among the counted (valid, certain) rows.

    >>> round(quality_variance_share(torch.tensor([0.2, 0.3, 0.0, -1.0]), torch.tensor([True, True, False, False]), 4), 4)
    0.0047
    """
    groups, keep = rewards.view(-1, num_generations), counted.view(-1, num_generations).to(rewards.dtype)
    total = ((groups - groups.mean(1, keepdim=True)) ** 2).sum()
    n = keep.sum(1, keepdim=True).clamp(min=1)
    quality = (((groups - (groups * keep).sum(1, keepdim=True) / n) ** 2) * keep).sum()
    return float(quality / total) if total > 0 else float("nan")


def masked_token_logps(
    logits: torch.Tensor, ids: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of `ids` (B, T) and entropies under the distribution renormalised over the `allowed` tokens (B, T, V).

    >>> lp, h = masked_token_logps(torch.zeros(1, 1, 4), torch.tensor([[1]]), torch.tensor([[[True, True, False, False]]]))
    >>> round(float(lp.exp()), 3), round(float(h), 3)
    (0.5, 0.693)
    """
    logps = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    probs = logps.exp()
    entropy = -(probs * torch.where(allowed, logps, torch.zeros_like(logps))).sum(-1)
    return logps.gather(-1, ids.unsqueeze(-1)).squeeze(-1), entropy
