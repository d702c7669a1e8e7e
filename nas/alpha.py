"""The alpha-divergence of eq. 1 (AlphaNet), between teacher and student class scores."""

from __future__ import annotations

from defslice.errors import ConfigError
from defslice.nas._torch import require_torch

torch = require_torch()

__all__ = ["adaptive_alpha_divergence", "alpha_divergence"]


def alpha_divergence(teacher_logits, student_logits, alpha: float, iw_clip: float = 5.0):
    """``D_alpha(p || q) = 1 / (alpha (alpha - 1)) * sum_i q_i ((p_i / q_i)^alpha - 1)``.

    ``p`` = softmax of the teacher (no gradient flows into it), ``q`` = softmax of the
    student; logits (B, classes). ``alpha = 1`` and ``alpha = 0`` are the limits
    ``KL(p || q)`` and ``KL(q || p)``. As in AlphaNet, the importance weight
    ``(p_i / q_i)^alpha`` is clipped at ``iw_clip`` so a student that puts almost no
    mass where the teacher does cannot blow the loss up. Returns (B,).
    """
    log_p = torch.log_softmax(teacher_logits.detach(), dim=-1)
    log_q = torch.log_softmax(student_logits, dim=-1)
    q = log_q.exp()
    if alpha == 1.0:
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if alpha == 0.0:
        return (q * (log_q - log_p)).sum(-1)
    iw = torch.exp(alpha * (log_p - log_q)).clamp(max=iw_clip)
    return (q * (iw - 1)).sum(-1) / (alpha * (alpha - 1))


def adaptive_alpha_divergence(teacher_logits, student_logits, alpha_min: float,
                              alpha_max: float, iw_clip: float = 5.0):
    """Eq. 1: ``max(D_alpha+, D_alpha-)`` per sample, averaged over the batch (scalar)."""
    if not alpha_min < 0 < alpha_max:
        raise ConfigError("nas.alpha_min/alpha_max", (alpha_min, alpha_max),
                          "alpha_min < 0 < alpha_max")
    d_plus = alpha_divergence(teacher_logits, student_logits, alpha_max, iw_clip)
    d_minus = alpha_divergence(teacher_logits, student_logits, alpha_min, iw_clip)
    return torch.maximum(d_plus, d_minus).mean()
