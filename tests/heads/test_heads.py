"""Margin heads against hand-computed values (math.cos on chosen angles), special cases, state, errors."""

from __future__ import annotations

import math
import statistics
import warnings

import pytest
import torch
import torch.nn.functional as F

from marginlab.core.config import HEAD_PARAM_MODELS
from marginlab.heads import HEAD_NAMES, build_head, head_defaults, magface_lambda_bound
from marginlab.heads.p_yi import p_yi_quality

# ---------------------------------------------------------------------------- a 2-D toy with known angles
# Class centres at angles PHI (stored with different lengths: the head must normalise them), embeddings
# at angles ALPHA with norms NORMS. cos θ_j = cos(α - φ_j).
PHI = (0.0, 2 * math.pi / 3, -2 * math.pi / 3)
CENTRE_LEN = (2.5, 0.7, 1.0)
ALPHA = (0.3, 2.0, -2.5, 1.2)
NORMS = (3.0, 7.0, 0.5, 40.0)
LABELS = (0, 1, 2, 0)


def angle(a: float, b: float) -> float:
    """Angle in [0, π] between directions a and b (radians)."""
    d = (a - b) % (2 * math.pi)
    return min(d, 2 * math.pi - d)


def toy(name: str, **hp):
    head = build_head(name, 2, 3, **hp)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[r * math.cos(p), r * math.sin(p)] for r, p in zip(CENTRE_LEN, PHI)]))
    z = torch.tensor([[n * math.cos(a), n * math.sin(a)] for n, a in zip(NORMS, ALPHA)], dtype=torch.float32)
    return head, z, torch.tensor(LABELS)


def thetas(i: int) -> list[float]:
    return [angle(ALPHA[i], p) for p in PHI]


def expected(target_fn, nontarget_fn=None, s: float = 64.0) -> torch.Tensor:
    """Logits by hand: target_fn(i, θ_y) for the target, nontarget_fn(i, θ_j) (default s·cos θ_j)."""
    rows = []
    for i, y in enumerate(LABELS):
        row = []
        for j, th in enumerate(thetas(i)):
            if j == y:
                row.append(target_fn(i, th))
            else:
                row.append(nontarget_fn(i, th) if nontarget_fn else s * math.cos(th))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------------------- registry and defaults
def test_registry_and_paper_defaults():
    assert set(HEAD_NAMES) >= {"normface", "cosface", "arcface", "curricularface", "magface", "adaface"}  # the paper's
    assert head_defaults("adaface") == {"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01, "stats_init": "official"}
    assert head_defaults("cosface") == {"s": 64.0, "m": 0.4}
    assert head_defaults("arcface") == {"s": 64.0, "m": 0.5}
    assert head_defaults("curricularface") == {"s": 64.0, "m": 0.5, "stats_init": "official"}
    assert head_defaults("normface") == {"s": 64.0}
    assert head_defaults("magface") == {"s": 64.0, "l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0}
    for name in HEAD_NAMES:  # the config schema and the heads agree on names and defaults
        assert head_defaults(name) == HEAD_PARAM_MODELS[name]().model_dump()


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_weight_init_is_official(name):
    torch.manual_seed(123)
    ref = torch.empty(7, 5).uniform_(-1, 1)
    ref = ref / ref.norm(dim=1, keepdim=True)
    torch.manual_seed(123)
    head = build_head(name, 5, 7)
    assert isinstance(head.weight, torch.nn.Parameter) and head.weight.shape == (7, 5)
    torch.testing.assert_close(head.weight.detach(), ref)
    rebuilt = build_head(name, 5, 7, **head.hyperparameters)
    assert rebuilt.hyperparameters == head.hyperparameters


def test_bad_names_and_hyperparameters():
    with pytest.raises(ValueError, match="unknown head 'sphereface'.*adaface"):
        build_head("sphereface", 4, 3)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['alpha'\].*allowed: h, m, s, stats_init, t_alpha"):
        build_head("adaface", 4, 3, alpha=0.1)
    with pytest.raises(ValueError, match="allowed: s$"):
        build_head("normface", 4, 3, m=0.3)
    with pytest.raises(ValueError, match="'s' = 0.0 is outside"):
        build_head("cosface", 4, 3, s=0.0)
    with pytest.raises(ValueError, match="'m' = -0.1"):
        build_head("arcface", 4, 3, m=-0.1)
    with pytest.raises(ValueError, match="'t_alpha'"):
        build_head("adaface", 4, 3, t_alpha=0.0)
    with pytest.raises(ValueError, match="'t_alpha'"):
        build_head("adaface", 4, 3, t_alpha=1.5)
    with pytest.raises(ValueError, match="must be a real number"):
        build_head("adaface", 4, 3, h="0.3")
    with pytest.raises(ValueError, match="must be a real number"):
        build_head("cosface", 4, 3, m=True)
    with pytest.raises(ValueError, match="'h' = nan"):
        build_head("adaface", 4, 3, h=float("nan"))
    with pytest.raises(ValueError, match="needs u_a > l_a"):
        build_head("magface", 4, 3, l_a=50.0, u_a=40.0)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        build_head("arcface", 4, 0)
    # h in (0, 1], the same range as the params schema (h = 0 is CosFace; h > 1 clips ẑ within a fraction of a std)
    for bad_h in (-0.333, 0.0, 1.5, 5.0):
        with pytest.raises(ValueError, match=r"'h' = .* outside the allowed range \(0, 1\]"):
            build_head("adaface", 4, 3, h=bad_h)
    assert build_head("adaface", 4, 3, h=1.0).h == 1.0


def test_bad_inputs():
    head, z, y = toy("arcface")
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, 2\)"):
        head(torch.zeros(4, 3), y)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        head(z, y[:3])
    with pytest.raises(ValueError, match="integer tensor"):
        head(z, y.float())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], got values in \[0, 3\]"):
        head(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="takes no quality signal"):
        head(z, y, quality=torch.ones(4))
    ada, z, y = toy("adaface")
    with pytest.raises(ValueError, match=r"quality must have shape \(4,\)"):
        ada(z, y, quality=torch.ones(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ada(z, y, quality=torch.tensor([0.1, float("nan"), 0.3, 0.2]))


# ---------------------------------------------------------------------------- hand-computed logits
def test_normface_cosface_arcface_by_hand():
    head, z, y = toy("normface", s=10.0)
    torch.testing.assert_close(head(z, y), expected(lambda i, th: 10.0 * math.cos(th), s=10.0))
    head, z, y = toy("cosface")
    torch.testing.assert_close(head(z, y), expected(lambda i, th: 64.0 * (math.cos(th) - 0.4)))
    head, z, y = toy("arcface", m=0.5)
    torch.testing.assert_close(head(z, y), expected(lambda i, th: 64.0 * math.cos(th + 0.5)))


def test_arcface_boundary_clip_convention():
    """θ + m > π: the clip convention keeps s·cos(π - eps) and passes no gradient; below it the usual form."""
    s, m, eps = 64.0, 0.5, 1e-4
    head = build_head("arcface", 2, 2, s=s, m=m)
    below, above = math.pi - m - 0.05, math.pi - m + 0.05
    cos = torch.tensor([[math.cos(below), 0.1], [math.cos(above), 0.1]], dtype=torch.float64, requires_grad=True)
    logits = head.logits_from_cosines(cos, torch.tensor([0, 0]))
    assert logits[0, 0].item() == pytest.approx(s * math.cos(below + m), abs=1e-9)
    assert logits[1, 0].item() == pytest.approx(s * math.cos(math.pi - eps), abs=1e-9)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), cos)
    # d/dx s·cos(arccos x + m) = s·sin(θ + m)/sin θ below the boundary, 0 past it.
    assert grad[0, 0].item() == pytest.approx(s * math.sin(below + m) / math.sin(below), rel=1e-9)
    assert grad[1, 0].item() == 0.0
    assert logits[1, 1].item() == pytest.approx(s * 0.1)


def test_curricularface_by_hand_with_hard_negatives():
    s, m, t = 64.0, 0.5, 0.3
    head, z, y = toy("curricularface", s=s, m=m)
    head.t.fill_(t)
    head.eval()
    out = head(z, y)

    def target(i, th):
        return s * math.cos(th + m)  # every toy target has θ_y < π - m

    def nontarget(i, th):
        c = math.cos(th)
        th_y = thetas(i)[LABELS[i]]
        return s * c * (t + c) if c > math.cos(th_y + m) else s * c

    ref = expected(target, nontarget)
    torch.testing.assert_close(out, ref)
    # the toy must contain both kinds of negative for this test to mean something
    kinds = {math.cos(th) > math.cos(thetas(i)[LABELS[i]] + m)
             for i in range(4) for j, th in enumerate(thetas(i)) if j != LABELS[i]}
    assert kinds == {True, False}
    assert float(head.t) == pytest.approx(t, abs=1e-7)  # eval mode leaves t alone


def test_curricularface_threshold_fallback_and_t_update():
    s, m = 64.0, 0.5
    head = build_head("curricularface", 2, 2, s=s, m=m)
    x_far = math.cos(math.pi - 0.3)  # θ_y = π - 0.3 > π - m: fallback cos θ - sin(π - m)·m
    x_near = 0.8
    cos = torch.tensor([[x_far, -0.9], [x_near, 0.2]], dtype=torch.float64)
    head.train()
    logits = head.logits_from_cosines(cos, torch.tensor([0, 0]))
    assert logits[0, 0].item() == pytest.approx(s * (x_far - math.sin(math.pi - m) * m), abs=1e-9)
    assert logits[1, 0].item() == pytest.approx(s * math.cos(math.acos(x_near) + m), abs=1e-9)
    t1 = 0.01 * (x_far + x_near) / 2  # t ← 0.01·mean(cos θ_y) + 0.99·0, before use
    assert float(head.t) == pytest.approx(t1, rel=1e-6)
    # row 0: cos(θ_y + m) = cos(π + 0.2) ≈ -0.98 < -0.9 → the negative -0.9 is hard and uses the new t
    assert logits[0, 1].item() == pytest.approx(s * -0.9 * (t1 - 0.9), rel=1e-6)
    assert logits[1, 1].item() == pytest.approx(s * 0.2)  # 0.2 < cos(θ_y + m) ≈ 0.35: easy, unchanged
    head.logits_from_cosines(cos, torch.tensor([0, 0]))
    assert float(head.t) == pytest.approx(0.01 * (x_far + x_near) / 2 + 0.99 * t1, rel=1e-6)
    assert head.state_summary() == {"t": pytest.approx(float(head.t))}


def magface_margin(a: float, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8) -> float:
    a = min(max(a, l_a), u_a)
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def test_magface_by_hand_regularizer_and_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults satisfy the feasibility bound
        head, z, y = toy("magface")

    def target(i, th):
        c = math.cos(th)
        return 64.0 * (math.cos(th + magface_margin(NORMS[i])) if c > 0 else c)

    torch.testing.assert_close(head(z, y), expected(target))
    # norms 3 (clamped to 10), 7 (10), 0.5 (10), 40 → g(a) = a/u_a² + 1/a
    a = [10.0, 10.0, 10.0, 40.0]
    ref = 35.0 * sum(x / 110.0**2 + 1.0 / x for x in a) / 4
    assert head.regularizer(z).item() == pytest.approx(ref, rel=1e-6)
    # a target with cos θ_y ≤ 0 keeps the plain cosine (easy margin)
    cos = torch.tensor([[-0.3, 0.2]], dtype=torch.float64)
    out = build_head("magface", 2, 2).logits_from_cosines(cos, torch.tensor([0]), norms=torch.tensor([50.0]))
    assert out[0, 0].item() == pytest.approx(64.0 * -0.3)
    with pytest.raises(ValueError, match="needs the feature norms"):
        build_head("magface", 2, 2).logits_from_cosines(cos, torch.tensor([0]))

    bound = 64.0 * (0.35 / 100.0) * 110.0**2 * 10.0**2 / (110.0**2 - 10.0**2)
    assert magface_lambda_bound(64.0, 10.0, 110.0, 0.45, 0.8) == pytest.approx(bound)
    assert bound == pytest.approx(22.59, abs=0.005)
    with pytest.warns(UserWarning, match=r"lambda_g=20 is below the feasibility bound .* = 22\.59"):
        build_head("magface", 2, 3, lambda_g=20.0)


def test_magface_gradient_reaches_norm_and_regulariser_grad():
    head, z, y = toy("magface")
    z = z.clone().requires_grad_(True)
    F.cross_entropy(head(z, y), y).backward()
    radial = (z.grad * z.detach()).sum(dim=1)
    assert radial[3].abs().item() > 1e-4  # norm 40 is inside [l_a, u_a]: the margin pulls on the norm
    assert radial[:3].abs().max().item() < 1e-5  # clamped below l_a: no norm gradient
    z2 = torch.tensor([[30.0, 40.0]], requires_grad=True)  # ||z|| = 50
    head.regularizer(z2).backward()
    dg = 35.0 * (1 / 110.0**2 - 1 / 50.0**2)  # d/da of λ_g·g(a), then da/dz = z/||z||
    torch.testing.assert_close(z2.grad, torch.tensor([[dg * 0.6, dg * 0.8]]))


@pytest.mark.parametrize("name", ["normface", "cosface", "arcface", "curricularface", "adaface"])
def test_regularizer_is_zero(name):
    head, z, _ = toy(name)
    r = head.regularizer(z)
    assert r.shape == () and r.item() == 0.0


# ---------------------------------------------------------------------------- AdaFace
def adaface_target(theta: float, z_hat: float, s=64.0, m=0.4, eps=1e-3) -> float:
    th = min(max(theta - m * z_hat, eps), math.pi - eps)
    return s * (math.cos(th) - (m * z_hat + m))


def test_adaface_by_hand_eval_mode():
    mu, sigma, h = 20.0, 30.0, 0.5
    head, z, y = toy("adaface", h=h)
    head.batch_mean.fill_(mu)
    head.batch_std.fill_(sigma)
    head.eval()
    z_hats = [max(-1.0, min(1.0, h * (min(max(n, 0.001), 100) - mu) / (sigma + 1e-3))) for n in NORMS]
    assert -1 < z_hats[0] < 0 < z_hats[3] < 1  # interior values, not just the clipped ends
    out = head(z, y)
    torch.testing.assert_close(out, expected(lambda i, th: adaface_target(th, z_hats[i])))
    torch.testing.assert_close(head(z, y), out)  # eval: no state change, same result
    assert (float(head.batch_mean), float(head.batch_std)) == (mu, sigma)


def test_adaface_special_cases_match_arcface_cosface():
    """ẑ = -1 → ArcFace(m); ẑ = 0 → CosFace(m); ẑ = +1 → s·(cos(θ - m) - 2m). ẑ forced by norm, μ, σ, h."""
    m = 0.4
    ada, z, y = toy("adaface", m=m, h=1.0)
    ada.batch_mean.fill_(20.0)
    ada.batch_std.fill_(10.0)
    ada.eval()
    direction = F.normalize(z, dim=1)
    arc, _, _ = toy("arcface", m=m)
    cos, _, _ = toy("cosface", m=m)
    # norm 5: h(5-20)/10.001 < -1 → -1; norm 20: 0; norm 40: 2 → +1
    torch.testing.assert_close(ada(direction * 5.0, y), arc(z, y))
    torch.testing.assert_close(ada(direction * 20.0, y), cos(z, y))
    # ẑ = +1: θ' = θ - m while θ_y > m; below that θ' is clipped to eps (the toy has both cases)
    assert {thetas(i)[LABELS[i]] > m for i in range(4)} == {True, False}
    plus = expected(lambda i, th: 64.0 * (math.cos(th - m if th > m else 1e-3) - 2 * m))
    torch.testing.assert_close(ada(direction * 40.0, y), plus)


def test_adaface_no_gradient_through_norm_in_margin():
    s, mu, sigma = 8.0, 20.0, 30.0  # small s: no sample has a vanishing loss; every ẑ inside (-1, 1)
    ada, z, y = toy("adaface", h=1.0, s=s)
    ada.batch_mean.fill_(mu)
    ada.batch_std.fill_(sigma)
    ada.eval()
    z = z.clone().requires_grad_(True)
    F.cross_entropy(ada(z, y), y).backward()

    def reference(detach: bool) -> torch.Tensor:
        """Independent AdaFace logits with ẑ from a detached constant (or, as a control, with gradient)."""
        zz = z.detach().clone().requires_grad_(True)
        norm = zz.norm(dim=1)
        norm = norm.detach() if detach else norm
        q = (1.0 * (norm.clamp(0.001, 100) - mu) / (sigma + 1e-3)).clamp(-1, 1)
        assert (q.abs() < 1).all()
        cos = F.normalize(zz, dim=1) @ F.normalize(ada.weight.detach(), dim=1).T
        th = torch.acos(cos.gather(1, y[:, None]).squeeze(1).clamp(-1 + 1e-3, 1 - 1e-3))
        tgt = s * (torch.cos((th - 0.4 * q).clamp(1e-3, math.pi - 1e-3)) - (0.4 * q + 0.4))
        logits = (s * cos).scatter(1, y[:, None], tgt[:, None])
        F.cross_entropy(logits, y).backward()
        return zz.grad

    torch.testing.assert_close(z.grad, reference(detach=True))
    control = reference(detach=False)  # with the norm's gradient: differs for every sample (> 0.1 %)
    assert ((z.grad - control).norm(dim=1) > 1e-3 * control.norm(dim=1)).all()
    radial = (z.grad * z.detach()).sum(dim=1)  # loss depends on z only through z/||z||: grad ⟂ z
    assert radial.abs().max().item() < 1e-5


def test_adaface_running_statistics_two_steps():
    head = build_head("adaface", 2, 2)  # t_alpha = 0.01, μ0 = 20, σ0 = 100
    head.train()
    y = torch.tensor([0, 1])
    b1 = [12.0, 30.0]
    cos = torch.tensor([[0.5, 0.1], [0.2, 0.7]])
    out = head.logits_from_cosines(cos, y, norms=torch.tensor(b1))
    mu1 = 0.01 * statistics.mean(b1) + 0.99 * 20.0
    sd1 = 0.01 * statistics.stdev(b1) + 0.99 * 100.0
    assert float(head.batch_mean) == pytest.approx(mu1, rel=1e-6)
    assert float(head.batch_std) == pytest.approx(sd1, rel=1e-6)
    # updated BEFORE use: the step's logits use μ1, σ1
    q = [max(-1, min(1, 0.333 * (n - mu1) / (sd1 + 1e-3))) for n in b1]
    assert out[0, 0].item() == pytest.approx(adaface_target(math.acos(0.5), q[0]), abs=1e-4)
    assert out[1, 1].item() == pytest.approx(adaface_target(math.acos(0.7), q[1]), abs=1e-4)
    b2 = [50.0, 70.0, 150.0]  # 150 is clipped to 100 before the statistics
    head.logits_from_cosines(torch.full((3, 2), 0.3), torch.tensor([0, 1, 0]), norms=torch.tensor(b2))
    clipped = [50.0, 70.0, 100.0]
    mu2 = 0.01 * statistics.mean(clipped) + 0.99 * mu1
    sd2 = 0.01 * statistics.stdev(clipped) + 0.99 * sd1
    assert head.state_summary() == {"batch_mean": pytest.approx(mu2, rel=1e-6), "batch_std": pytest.approx(sd2, rel=1e-6)}
    # a one-sample batch has no unbiased std: σ is kept, μ still moves
    head.logits_from_cosines(torch.full((1, 2), 0.3), torch.tensor([0]), norms=torch.tensor([60.0]))
    assert float(head.batch_std) == pytest.approx(sd2, rel=1e-6)
    assert float(head.batch_mean) == pytest.approx(0.01 * 60.0 + 0.99 * mu2, rel=1e-6)


def test_adaface_t_alpha_and_eval_immutability():
    head = build_head("adaface", 2, 2, t_alpha=0.5)
    head.train()
    head.logits_from_cosines(torch.full((2, 2), 0.3), torch.tensor([0, 1]), norms=torch.tensor([10.0, 30.0]))
    assert float(head.batch_mean) == pytest.approx(0.5 * 20 + 0.5 * 20)
    assert float(head.batch_std) == pytest.approx(0.5 * math.sqrt(200) + 0.5 * 100, rel=1e-6)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.eval()
    head.logits_from_cosines(torch.full((2, 2), 0.3), torch.tensor([0, 1]), norms=torch.tensor([90.0, 99.0]))
    head.logits_from_cosines(torch.full((2, 2), 0.3), torch.tensor([0, 1]), quality=torch.tensor([0.1, 0.9]))
    for k, v in head.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_adaface_external_quality_first_batch_init():
    head = build_head("adaface", 2, 2)
    head.train()
    cos = torch.full((3, 2), 0.3)
    y = torch.tensor([0, 1, 0])
    q1 = [0.2, 0.6, 0.7]
    head.logits_from_cosines(cos, y, quality=torch.tensor(q1))
    assert float(head.batch_mean) == pytest.approx(0.5, rel=1e-6)
    assert float(head.batch_std) == pytest.approx(math.sqrt(0.07), rel=1e-6)
    assert int(head.stats_source) == 2
    q2 = [0.9, 0.1]
    out = head.logits_from_cosines(cos[:2], y[:2], quality=torch.tensor(q2))
    mu2 = 0.01 * 0.5 + 0.99 * 0.5
    sd2 = 0.01 * statistics.stdev(q2) + 0.99 * math.sqrt(0.07)
    assert float(head.batch_mean) == pytest.approx(mu2, rel=1e-6)
    assert float(head.batch_std) == pytest.approx(sd2, rel=1e-6)
    zh = max(-1, min(1, 0.333 * (0.9 - mu2) / (sd2 + 1e-3)))
    assert out[0, 0].item() == pytest.approx(adaface_target(math.acos(0.3), zh), abs=1e-4)
    # the feature norm after an external signal is refused (different units in one EMA)
    with pytest.raises(ValueError, match="built from an external quality signal"):
        head.logits_from_cosines(cos, y, norms=torch.tensor([5.0, 6.0, 7.0]))
    # a one-sample first batch sets μ only; σ starts at the first batch that has a std
    fresh = build_head("adaface", 2, 2).train()
    fresh.logits_from_cosines(cos[:1], y[:1], quality=torch.tensor([0.4]))
    assert float(fresh.batch_mean) == pytest.approx(0.4) and float(fresh.batch_std) == 100.0
    assert (int(fresh.mean_updates), int(fresh.std_updates)) == (1, 0)
    fresh.logits_from_cosines(cos[:2], y[:2], quality=torch.tensor([0.2, 0.4]))
    assert float(fresh.batch_mean) == pytest.approx(0.01 * 0.3 + 0.99 * 0.4)
    assert float(fresh.batch_std) == pytest.approx(math.sqrt(0.02))


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_state_dict_round_trip(name):
    head, z, y = toy(name)
    head.train()
    for k in range(3):
        head(z * (1 + k), y, quality=torch.tensor([0.1, 0.5, 0.9, 0.3]) if name == "adaface" else None)
    state = head.state_dict()
    clone = build_head(name, 2, 3)
    clone.load_state_dict(state)
    assert clone.state_summary() == head.state_summary()
    expected_keys = {"weight"} | {"adaface": {"batch_mean", "batch_std", "stats_source", "mean_updates", "std_updates"},
                                   "curricularface": {"t", "t_updates"}}.get(name, set())
    assert set(state) == expected_keys
    head.eval(), clone.eval()
    torch.testing.assert_close(clone(z, y), head(z, y))
    if name == "adaface":  # the host mirror of stats_source follows the loaded buffer
        clone.train()
        with pytest.raises(ValueError, match="external quality"):
            clone(z, y)


def test_state_summary_keys():
    assert build_head("arcface", 2, 3).state_summary() == {}
    assert build_head("adaface", 2, 3).state_summary() == {"batch_mean": 20.0, "batch_std": 100.0}
    assert build_head("curricularface", 2, 3).state_summary() == {"t": 0.0}


# ---------------------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_forward_equals_logits_from_cosines(name):
    torch.manual_seed(0)
    head = build_head(name, 6, 5).eval()
    z = torch.randn(8, 6) * 15
    y = torch.randint(0, 5, (8,))
    cos = F.normalize(z, dim=1) @ F.normalize(head.weight.detach(), dim=1).T
    torch.testing.assert_close(head(z, y), head.logits_from_cosines(cos, y, norms=z.norm(dim=1)), atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_autocast_keeps_margin_math_in_float32(name):
    torch.manual_seed(0)
    head = build_head(name, 16, 40).eval()
    z = torch.randn(12, 16) * 20
    y = torch.randint(0, 40, (12,))
    ref = head(z, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(z, y)
    assert out.dtype == torch.float32
    # the target column comes from float32 cosines: same as without autocast
    torch.testing.assert_close(out.gather(1, y[:, None]), ref.gather(1, y[:, None]), atol=1e-4, rtol=1e-5)
    # the other columns went through a bfloat16 matmul: close, not equal
    assert (out - ref).abs().max().item() < 64 * 0.02


def test_float64_and_int32_labels():
    head = build_head("arcface", 2, 3).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[math.cos(p), math.sin(p)] for p in PHI], dtype=torch.float64))
    z = torch.tensor([[n * math.cos(a), n * math.sin(a)] for n, a in zip(NORMS, ALPHA)], dtype=torch.float64)
    out64 = head(z, torch.tensor(LABELS, dtype=torch.int32))
    assert out64.dtype == torch.float64
    ref = [[64.0 * (math.cos(th + 0.5) if j == LABELS[i] else math.cos(th)) for j, th in enumerate(thetas(i))]
           for i in range(4)]
    torch.testing.assert_close(out64, torch.tensor(ref, dtype=torch.float64), atol=1e-10, rtol=1e-12)


def test_p_yi_quality_by_hand():
    s = 2.0
    head, z, y = toy("cosface", s=s, m=0.35)
    z = z.clone().requires_grad_(True)
    p = p_yi_quality(head, z, y)
    assert not p.requires_grad and p.dtype == torch.float32 and p.shape == (4,)
    ref = []
    for i, lab in enumerate(LABELS):
        e = [math.exp(s * math.cos(th)) for th in thetas(i)]  # plain logits: no margin
        ref.append(e[lab] / sum(e))
    torch.testing.assert_close(p, torch.tensor(ref))
    with pytest.raises(ValueError, match="labels"):
        p_yi_quality(head, z, y[:2])


# ---------------------------------------------------------------------------- the fused normalised linear
@pytest.mark.parametrize("name", ["normface", "cosface", "arcface", "curricularface", "magface"])
def test_gradcheck_float64(name):
    """Hand-written backward of the W row normalisation vs finite differences, through the whole head."""
    torch.manual_seed(1)
    head = build_head(name, 5, 4, s=4.0).double().eval()
    if name == "curricularface":
        head.t.fill_(0.3)
    z = (torch.randn(6, 5, dtype=torch.float64) * 30).requires_grad_(True)
    w = torch.randn(4, 5, dtype=torch.float64).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 2])

    def loss(z, w):
        logits = torch.func.functional_call(head, {"weight": w}, (z, y))
        return F.cross_entropy(logits, y) + head.regularizer(z)

    assert torch.autograd.gradcheck(loss, (z, w))


def test_adaface_weight_gradcheck_and_reference_gradients():
    """AdaFace's weight gradient is exact (finite differences); z's is not, by design (detached norm)."""
    torch.manual_seed(2)
    head = build_head("adaface", 5, 4, s=4.0).double().eval()
    z = torch.randn(6, 5, dtype=torch.float64) * 30
    y = torch.tensor([0, 1, 2, 3, 0, 2])
    w = torch.randn(4, 5, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w: F.cross_entropy(torch.func.functional_call(head, {"weight": w}, (z, y)), y), (w,)
    )


def test_weight_gradient_matches_plain_autograd_float32():
    torch.manual_seed(3)
    head = build_head("cosface", 32, 50)
    z = (torch.randn(16, 32) * 10).requires_grad_(True)
    y = torch.randint(0, 50, (16,))
    F.cross_entropy(head(z, y), y).backward()
    w = head.weight.detach().clone().requires_grad_(True)
    z2 = z.detach().clone().requires_grad_(True)
    cos = F.normalize(z2, dim=1) @ F.normalize(w, dim=1).T
    logits = 64.0 * (cos - 0.4 * F.one_hot(y, 50))  # dense one-hot reference
    F.cross_entropy(logits, y).backward()
    torch.testing.assert_close(head.weight.grad, w.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(z.grad, z2.grad, atol=1e-6, rtol=1e-4)


def test_autocast_backward_dtypes():
    torch.manual_seed(4)
    head = build_head("adaface", 16, 40)
    z = (torch.randn(12, 16) * 20).requires_grad_(True)
    y = torch.randint(0, 40, (12,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(head(z, y), y)
    loss.backward()
    assert head.weight.grad.dtype == torch.float32 and z.grad.dtype == torch.float32
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- how running statistics start
def _norm_batches(seed=0, steps=6, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [22.0 + 3.0 * torch.randn(batch, generator=g) + k for k in range(steps)]


def _zero_started_ema(values, alpha):
    """The reference: an EMA from 0 divided by its bias 1 - (1 - alpha)^k (Adam's correction), by hand."""
    raw, out = 0.0, []
    for k, v in enumerate(values, start=1):
        raw = (1 - alpha) * raw + alpha * v
        out.append(raw / (1 - (1 - alpha) ** k))
    return out


@pytest.mark.parametrize("init", ["official", "first_batch", "bias_corrected"])
def test_adaface_stats_init(init):
    alpha = 0.01
    head = build_head("adaface", 2, 2, stats_init=init).train()
    batches = _norm_batches()
    means, stds = [], []
    for q in batches:
        head.update_statistics(q, external=False)
        means.append(float(head.batch_mean))
        stds.append(float(head.batch_std))
    bm = [float(q.mean()) for q in batches]
    bs = [float(q.std()) for q in batches]
    if init == "official":
        mu, sd = 20.0, 100.0
        for m_, s_, em, es in zip(bm, bs, means, stds):
            mu, sd = alpha * m_ + (1 - alpha) * mu, alpha * s_ + (1 - alpha) * sd
            assert em == pytest.approx(mu, rel=1e-5) and es == pytest.approx(sd, rel=1e-5)
        assert stds[-1] > 90  # still the official start after 6 steps: ẑ ≈ 0, the head is CosFace
    elif init == "first_batch":
        mu, sd = bm[0], bs[0]
        assert means[0] == pytest.approx(mu, rel=1e-5) and stds[0] == pytest.approx(sd, rel=1e-5)
        for m_, s_, em, es in zip(bm[1:], bs[1:], means[1:], stds[1:]):
            mu, sd = alpha * m_ + (1 - alpha) * mu, alpha * s_ + (1 - alpha) * sd
            assert em == pytest.approx(mu, rel=1e-5) and es == pytest.approx(sd, rel=1e-5)
    else:
        assert means == pytest.approx(_zero_started_ema(bm, alpha), rel=1e-5)
        assert stds == pytest.approx(_zero_started_ema(bs, alpha), rel=1e-5)
        # early on that is nearly the plain average of the batches so far (window ≈ all of them)
        assert means[-1] == pytest.approx(sum(bm) / len(bm), rel=2e-3)
    assert int(head.mean_updates) == int(head.std_updates) == len(batches)


def test_bias_corrected_becomes_the_official_ema():
    """After many updates the correction vanishes: the same rate as the official EMA."""
    from marginlab.heads.base import ema_rate

    assert ema_rate("bias_corrected", 0.01, 0) == 1.0
    assert ema_rate("bias_corrected", 0.01, 2000) == pytest.approx(0.01, rel=1e-8)
    assert ema_rate("first_batch", 0.01, 0) == 1.0 and ema_rate("first_batch", 0.01, 1) == 0.01
    with pytest.raises(ValueError, match="stats_init.*not one of official, first_batch, bias_corrected"):
        build_head("adaface", 2, 2, stats_init="warm")


@pytest.mark.parametrize("init", ["official", "first_batch", "bias_corrected"])
def test_curricularface_t_init(init):
    head = build_head("curricularface", 2, 2, stats_init=init).train()
    g = torch.Generator().manual_seed(1)
    means, ts = [], []
    for _ in range(5):
        cos = torch.rand(8, 2, generator=g) * 0.6 + 0.2
        y = torch.randint(0, 2, (8,), generator=g)
        head.logits_from_cosines(cos, y)
        means.append(float(cos.gather(1, y[:, None]).mean()))
        ts.append(float(head.t))
    if init == "official":
        t = 0.0
        expected = []
        for m_ in means:
            t = 0.01 * m_ + 0.99 * t
            expected.append(t)
    elif init == "first_batch":
        t = means[0]
        expected = [t]
        for m_ in means[1:]:
            t = 0.01 * m_ + 0.99 * t
            expected.append(t)
    else:
        expected = _zero_started_ema(means, 0.01)
    assert ts == pytest.approx(expected, rel=1e-5)
    assert int(head.t_updates) == 5


def test_state_dict_without_update_counters_loads():
    """A model.pt saved before the counters existed loads; its statistics count as long settled."""
    head = build_head("adaface", 2, 2, stats_init="bias_corrected")
    state = {k: v for k, v in head.state_dict().items() if not k.endswith("_updates")}
    state["batch_mean"] = torch.tensor(30.0)
    head.load_state_dict(state)
    assert int(head.mean_updates) >= 10**6 and float(head.batch_mean) == 30.0
    head.train().update_statistics(torch.tensor([40.0, 42.0]), external=False)
    assert float(head.batch_mean) == pytest.approx(0.99 * 30 + 0.01 * 41, rel=1e-6)  # the official rate
    cf = build_head("curricularface", 2, 2)
    cf.load_state_dict({k: v for k, v in cf.state_dict().items() if k != "t_updates"})
    assert int(cf.t_updates) >= 10**6
