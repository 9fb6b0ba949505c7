"""Schedule-Free AdamW against a NumPy transcription of facebookresearch/schedule_free (100
steps), eval()/train() restoring y bit for bit, and the class's checks."""

import math

import numpy as np
import pytest

import fastopt


class Transcription:
    """schedulefree.AdamWScheduleFreeReference (adamw_schedulefree_reference.py), written out in
    NumPy: it keeps x, y and z explicitly (the fused class keeps only y and z)."""

    def __init__(self, p, lr, beta1, beta2, eps, weight_decay, warmup_steps, r, wlp):
        self.x, self.y, self.z = p.copy(), p.copy(), p.copy()
        self.v = np.zeros_like(p)
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.warmup, self.r, self.wlp = warmup_steps, r, wlp
        self.k, self.weight_sum, self.lr_max = 0, 0.0, -1.0

    def step(self, grad):
        k = self.k
        sched = (k + 1) / self.warmup if k < self.warmup else 1.0
        bc2 = 1 - self.b2 ** (k + 1)
        lr = self.lr * sched * math.sqrt(bc2)
        self.lr_max = max(lr, self.lr_max)
        weight = ((k + 1) ** self.r) * (self.lr_max ** self.wlp)
        self.weight_sum += weight
        ckp1 = weight / self.weight_sum if self.weight_sum else 0.0
        if self.wd != 0:
            self.z = self.z - lr * self.wd * self.y
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        self.z = self.z - lr * grad / (np.sqrt(self.v) + self.eps)
        self.x = (1 - ckp1) * self.x + ckp1 * self.z
        self.y = self.b1 * self.x + (1 - self.b1) * self.z
        self.k += 1


def quadratic_grad(y, target):
    return 2.0 * (y - target)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(weight_decay=0.01, warmup_steps=10),
    dict(beta1=0.8, beta2=0.99, eps=1e-4, r=1.0, weight_lr_power=1.0, warmup_steps=5),
])
def test_matches_the_reference_over_100_steps(kw, dtype, rng):
    n = 301
    p0 = rng.standard_normal(n).astype(dtype)
    target = rng.standard_normal(n).astype(dtype)
    full = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                weight_lr_power=2.0)
    full.update(kw)
    ref = Transcription(p0.astype(np.float64), 0.05, full["beta1"], full["beta2"], full["eps"],
                        full["weight_decay"], full["warmup_steps"], full["r"],
                        full["weight_lr_power"])
    p = p0.copy()
    opt = fastopt.ScheduleFreeAdamW([p], lr=0.05, **kw)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for t in range(100):
        # the gradient at the reference's y (in the parameter's dtype), fed to both
        g = quadratic_grad(ref.y, target).astype(dtype)
        ref.step(g.astype(np.float64))
        opt.step([g])
        np.testing.assert_allclose(p, ref.y, err_msg=f"y, step {t + 1}", **tol)
        np.testing.assert_allclose(opt.state[0]["z"], ref.z, err_msg=f"z, step {t + 1}", **tol)
        np.testing.assert_allclose(opt.state[0]["v"], ref.v, err_msg=f"v, step {t + 1}", **tol)
    assert opt._carry["weight_sum"] == pytest.approx(ref.weight_sum, rel=1e-12)
    opt.eval()
    np.testing.assert_allclose(p, ref.x, **tol)
    # training moved towards the target
    assert np.abs(ref.x - target).mean() < np.abs(p0 - target).mean()


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, "bfloat16"])
def test_eval_then_train_restores_the_parameters_bitwise(dtype, rng):
    dt = fastopt.kernels._k.BFLOAT16 if dtype == "bfloat16" else np.dtype(dtype)
    p = rng.standard_normal(1000).astype(dt)
    opt = fastopt.ScheduleFreeAdamW([p], lr=0.01)
    for _ in range(5):
        opt.step([rng.standard_normal(1000).astype(np.float32 if dt.itemsize == 2 else dt)])
    y = p.tobytes()
    opt.eval()
    assert p.tobytes() != y and not opt.train_mode
    opt.eval()                                     # a second eval changes nothing
    opt.train()
    assert p.tobytes() == y and opt.train_mode
    opt.train()
    assert p.tobytes() == y


def test_eval_gives_x_from_y_and_z(rng):
    p = rng.standard_normal(20)
    opt = fastopt.ScheduleFreeAdamW([p], lr=0.01, beta1=0.8)
    opt.step([rng.standard_normal(20)])
    y, z = p.copy(), opt.state[0]["z"].copy()
    opt.eval()
    # y = (1 - b1) z + b1 x  =>  x = (y - (1 - b1) z) / b1
    np.testing.assert_allclose(p, (y - 0.2 * z) / 0.8, rtol=1e-12, atol=1e-14)


def test_step_and_state_dict_in_eval_mode_raise_and_change_nothing(rng):
    p = rng.standard_normal(10)
    opt = fastopt.ScheduleFreeAdamW([p])
    opt.step([np.ones(10)])
    opt.eval()
    before = (p.tobytes(), opt.state[0]["z"].tobytes(), opt.state[0]["v"].tobytes(),
              dict(opt._carry), opt.step_count)
    with pytest.raises(RuntimeError, match="train"):
        opt.step([np.ones(10)])
    with pytest.raises(RuntimeError, match="train"):
        opt.state_dict()
    after = (p.tobytes(), opt.state[0]["z"].tobytes(), opt.state[0]["v"].tobytes(),
             dict(opt._carry), opt.step_count)
    assert before == after


def test_first_step_by_hand():
    # k = 0: lr_t = lr sqrt(1 - b2), lr_max = lr_t, ckp1 = 1; v = (1 - b2) g^2 so
    # u = g / (sqrt(1 - b2) |g| + eps); z1 = z0 - lr_t u; y1 = z0 + (z1 - z0) ... = z1 + ... :
    # with ckp1 = 1: y <- y + (z - y) + lr_t (b1 * 0 - 1) u = z0 - lr_t u = z1 (y0 = z0)
    lr, b2 = 0.1, 0.999
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 3.0])
    opt = fastopt.ScheduleFreeAdamW([p], lr=lr, eps=0.0)
    opt.step([g])
    lr_t = lr * math.sqrt(1 - b2)
    u = g / (math.sqrt(1 - b2) * np.abs(g))
    np.testing.assert_allclose(opt.state[0]["z"], [1.0, -2.0] - lr_t * u, rtol=1e-14)
    np.testing.assert_allclose(p, opt.state[0]["z"], rtol=1e-14)


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(beta1=0.0), ValueError, "beta1"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(beta2=1.0), ValueError, "beta2"),
    (dict(warmup_steps=-1), ValueError, "warmup_steps"),
    (dict(warmup_steps=1.5), TypeError, "warmup_steps"),
    (dict(r=-1.0), ValueError, "r must"),
    (dict(weight_lr_power=float("nan")), ValueError, "weight_lr_power"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(maximize=1), TypeError, "maximize"),
    (dict(betas=(0.9, 0.99)), TypeError, "betas"),
])
def test_bad_arguments_raise(kw, exc, pattern):
    p = np.arange(3.0)
    with pytest.raises(exc, match=pattern):
        fastopt.ScheduleFreeAdamW([p], **kw)
    assert p.tolist() == [0.0, 1.0, 2.0]


def test_master_weights_keep_z_from_the_master(rng):
    bf16 = fastopt.kernels._k.BFLOAT16
    p = rng.standard_normal(64).astype(bf16)
    opt = fastopt.ScheduleFreeAdamW([p], lr=0.01, master_weights=True)
    np.testing.assert_array_equal(opt.state[0]["z"], opt.state[0]["master"])
    for _ in range(3):
        opt.step([rng.standard_normal(64).astype(np.float32)])
    y = p.tobytes()
    opt.eval()
    opt.train()
    assert p.tobytes() == y
