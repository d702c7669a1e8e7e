"""The alpha-divergence of eq. 1 (AlphaNet), between teacher and student class scores."""

from __future__ import annotations

from typing import Any

from defslice.errors import ConfigError
from defslice.nas._torch import require_torch

torch = require_torch()

__all__ = ["adaptive_alpha_divergence", "alpha_divergence"]

#: |alpha| below this (or |alpha - 1| below it) is treated as the KL limit.
KL_TOL = 1e-3


def alpha_divergence(teacher_logits: Any, student_logits: Any, alpha: float,
                     iw_clip: float = 5.0) -> tuple[Any, Any]:
    """``D_alpha(p || q) = 1 / (alpha (alpha - 1)) * sum_i q_i ((p_i / q_i)^alpha - 1)``
    per sample, and the surrogate whose gradient AlphaNet trains with.

    ``p`` = softmax of the teacher, ``q`` = softmax of the student; logits (B, classes);
    no gradient flows into the teacher. ``alpha = 1`` and ``alpha = 0`` are the limits
    ``KL(p || q)`` and ``KL(q || p)``. The importance weight ``w_i = p_i / q_i`` enters
    as ``min(w_i^alpha, iw_clip)`` (``alpha = 0``: ``min(w_i, iw_clip)``), so a student
    that puts almost no mass where the teacher does cannot blow the loss up.

    The gradient is AlphaNet's (``loss_ops.f_divergence``): ``-sum_i q_i rho(w_i)
    grad log q_i`` with ``q`` and the clipped weight held constant, ``rho = w^alpha /
    alpha - 1 / (alpha (1 - alpha))`` (``alpha = 1``: ``w``; ``alpha = 0``:
    ``log w - 1``). Without the clip this is the exact gradient of ``D_alpha``; with it,
    a clipped entry still pulls ``q_i`` towards ``p_i`` with weight ``rho(iw_clip)``
    (a clamp inside autograd would give such entries no gradient through the weight).

    Returns ``(value, surrogate)``, both (B,): ``value`` is ``D_alpha`` with the clipped
    weight (no gradient); ``surrogate`` has the gradient above.
    """
    p = torch.softmax(teacher_logits.detach(), dim=-1)
    log_q = torch.log_softmax(student_logits, dim=-1)
    q = log_q.detach().exp()
    w = (p / q).clamp(min=torch.finfo(q.dtype).tiny)  # log w finite where p underflows
    if abs(alpha) < KL_TOL:
        w = w.clamp(max=iw_clip)
        f, rho = -torch.log(w), torch.log(w) - 1.0
        f_base = 0.0
    elif abs(alpha - 1.0) < KL_TOL:
        f, rho, f_base = w * torch.log(w), w, 0.0
    else:
        iw = (w ** alpha).clamp(max=iw_clip)
        f_base = 1.0 / (alpha * (alpha - 1.0))
        f, rho = iw * f_base, iw / alpha + f_base
    value = (q * (f - f_base)).sum(-1)
    surrogate = -(q * rho * log_q).sum(-1)
    return value, surrogate


def adaptive_alpha_divergence(teacher_logits: Any, student_logits: Any, alpha_min: float,
                              alpha_max: float, iw_clip: float = 5.0) -> Any:
    """Eq. 1: per sample the larger of ``D_alpha-`` and ``D_alpha+``, averaged over the
    batch (scalar).

    The returned tensor's value is that mean of divergences; its gradient is AlphaNet's
    (the surrogate of the chosen alpha per sample, :func:`alpha_divergence`).
    """
    if not alpha_min < 0 < alpha_max:
        raise ConfigError("nas.alpha_min/alpha_max", (alpha_min, alpha_max),
                          "alpha_min < 0 < alpha_max")
    v_minus, s_minus = alpha_divergence(teacher_logits, student_logits, alpha_min, iw_clip)
    v_plus, s_plus = alpha_divergence(teacher_logits, student_logits, alpha_max, iw_clip)
    left = v_minus > v_plus
    value = torch.where(left, v_minus, v_plus).mean()
    surrogate = torch.where(left, s_minus, s_plus).mean()
    return value.detach() + surrogate - surrogate.detach()
