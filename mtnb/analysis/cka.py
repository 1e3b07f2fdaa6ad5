"""Linear centered kernel alignment (CKA) between two sets of hidden representations.

CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited") compares
two representations X (n × d1) and Y (n × d2) of the same n samples by the Hilbert-Schmidt
independence criterion (HSIC) of their Gram matrices, normalised to lie in [0, 1]:
CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X Xᵀ and L = Y Yᵀ. It is invariant to
orthogonal transforms and isotropic scaling of either representation, but not to arbitrary
invertible linear maps. The ``unbiased`` option uses the debiased HSIC estimator of Song et
al. (2012, "Feature selection via dependence maximization", the U-statistic HSIC_1), which
removes the positive bias that the plain estimator has when n is not much larger than d.

Conventions: inputs are numpy arrays or torch tensors; everything is converted to numpy
float64 on the CPU before any sum is taken, and every result is numpy float64 (a Python float
for one pair). HSIC values below are unnormalised (the 1/(n-1)² or 1/(n(n-3)) factor is
left out): it cancels in CKA. ``cka_matrix`` computes all pairs among m representations at
once from their centred Gram matrices and equals ``cka`` on every pair to about 1e-12.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtnb.core.errors import MtnbError

__all__ = ["gram_linear", "center_gram", "cka_gram", "cka_features", "cka", "cka_matrix"]


def _as_float64(x, name: str, ndim: int | tuple[int, ...] = 2) -> np.ndarray:
    """``x`` (numpy array or torch tensor) as a float64 numpy array, after checking its rank and values."""
    if hasattr(x, "detach"):  # a torch tensor: numpy cannot read bfloat16, so cast in torch first

        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in ndims:
        shapes = " or ".join({2: "(n, d)", 3: "(m, n, d)"}.get(k, f"{k}-D") for k in ndims)
        raise MtnbError(f"{name} has shape {x.shape}; pass an array of shape {shapes} (samples × features).")
    if not np.isfinite(x).all():
        raise MtnbError(f"{name} contains NaN or infinite values; drop or fix those samples before computing CKA.")
    return x


def _check_n(n_x: int, n_y: int, unbiased: bool) -> int:
    """The common number of samples, or a one-line error naming the problem and the fix."""
    if n_x != n_y:
        raise MtnbError(f"the representations have different numbers of samples ({n_x} and {n_y}); "
                        "CKA compares the same samples, so pass rows for the same n inputs in the same order.")
    if unbiased and n_x < 4:
        raise MtnbError(f"the unbiased CKA estimator needs at least 4 samples, got {n_x}; "
                        "pass more samples or use unbiased=False.")
    return n_x


def _normalise(hsic_xy, hsic_xx, hsic_yy):
    """CKA = HSIC(X, Y) / sqrt(HSIC(X, X) · HSIC(Y, Y)), refusing a representation with no variance."""
    if np.any(np.asarray(hsic_xx) <= 0) or np.any(np.asarray(hsic_yy) <= 0):
        raise MtnbError("a representation has zero (estimated) variance, e.g. all its samples are identical; "
                        "CKA is undefined for it, so drop it (or, with unbiased=True, use more samples).")
    return hsic_xy / np.sqrt(hsic_xx * hsic_yy)


def gram_linear(X) -> np.ndarray:
    """The linear-kernel Gram matrix of X.

    X: (n, d), n samples × d features, or a stack (m, n, d). Returns K = X Xᵀ in float64,
    of shape (n, n) (or (m, n, n)), with K_ij = ⟨x_i, x_j⟩.
    """
    X = _as_float64(X, "X", ndim=(2, 3))
    return X @ np.swapaxes(X, -1, -2)  # K = X Xᵀ


def center_gram(K, unbiased: bool = False) -> np.ndarray:
    """The centred Gram matrix, such that ⟨center_gram(K), center_gram(L)⟩_F is HSIC(K, L).

    K: (n, n) symmetric Gram matrix, or a stack (m, n, n). Returns a float64 array of the same
    shape.
    - biased: H K H with H = I − 11ᵀ/n (rows and columns have mean 0); then
      ⟨HKH, HLH⟩ = tr(K H L H) = (n − 1)² · HSIC_0.
    - unbiased: K̃ = K with its diagonal set to 0, then each row and column shifted so that
      rows and columns sum to 0 off the diagonal, and the diagonal set to 0 again; then
      ⟨K̃c, L̃c⟩ = tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1 = n(n − 3) · HSIC_1,
      the debiased estimator of Song et al. (2012). Needs n > 3.
    """
    K = _as_float64(K, "K", ndim=(2, 3)).copy()
    n = K.shape[-1]
    if K.shape[-2] != n:
        raise MtnbError(f"a Gram matrix must be square, got shape {K.shape}; build it with gram_linear(X).")
    _check_n(n, n, unbiased)
    diag = np.arange(n)
    if not unbiased:
        K -= K.mean(axis=-1, keepdims=True)  # K H: subtract each row's mean
        K -= K.mean(axis=-2, keepdims=True)  # H (K H): subtract each column's mean
        return K
    K[..., diag, diag] = 0.0                                          # K̃ = K − diag(K)
    r = K.sum(axis=-1) / (n - 2)                                      # r = K̃1 / (n − 2)
    r -= r.sum(axis=-1, keepdims=True) / (2 * (n - 1))                # r −= 1ᵀK̃1 / (2(n−1)(n−2))
    K -= r[..., :, None] + r[..., None, :]                            # K̃c = K̃ − r1ᵀ − 1rᵀ
    K[..., diag, diag] = 0.0                                          # zero diagonal again
    return K


def cka_gram(K, L, unbiased: bool = False) -> float:
    """Linear CKA from two Gram matrices K = X Xᵀ and L = Y Yᵀ of the same n samples.

    K, L: (n, n) each (uncentred; they are centred here). Returns the float
    CKA = ⟨Kc, Lc⟩ / sqrt(⟨Kc, Kc⟩ ⟨Lc, Lc⟩) with Kc = center_gram(K, unbiased).
    """
    K = _as_float64(K, "K")
    L = _as_float64(L, "L")
    _check_n(K.shape[0], L.shape[0], unbiased)
    Kc, Lc = center_gram(K, unbiased), center_gram(L, unbiased)
    hsic = lambda A, B: np.vdot(A, B)  # ⟨A, B⟩_F = Σ_ij A_ij B_ij = tr(A B) for symmetric A, B
    return float(_normalise(hsic(Kc, Lc), hsic(Kc, Kc), hsic(Lc, Lc)))


def _hsic_features(X: np.ndarray, Y: np.ndarray, unbiased: bool) -> float:
    """Unnormalised HSIC of column-centred X (n × d1) and Y (n × d2), without n × n matrices.

    biased:   ‖YᵀX‖²_F                         (= tr(K H L H))
    unbiased: ‖YᵀX‖²_F + ΣaΣb/((n−1)(n−2)) − n/(n−2)·aᵀb   (= n(n−3)·HSIC_1)
              with a_i = ‖x_i‖², b_i = ‖y_i‖² the squared row norms.
    """
    hsic = np.sum((Y.T @ X) ** 2)  # ‖YᵀX‖²_F = ⟨X Xᵀ, Y Yᵀ⟩_F
    if not unbiased:
        return hsic
    n = X.shape[0]
    a, b = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)  # squared row norms
    return hsic + a.sum() * b.sum() / ((n - 1) * (n - 2)) - n / (n - 2) * (a @ b)


def cka_features(X, Y, unbiased: bool = False) -> float:
    """Linear CKA in feature space: never forms an n × n matrix.

    X: (n, d1), Y: (n, d2), the same n samples. Columns are centred first (CKA, biased or
    unbiased, does not change under a shift of either representation). Returns the float
    biased:   ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F);
    unbiased: the same ratio of the feature-space debiased HSIC (see ``_hsic_features``).
    Costs O(n·d1·d2), so it is the cheaper form when n is larger than the widths.
    """
    X = _as_float64(X, "X")
    Y = _as_float64(Y, "Y")
    _check_n(X.shape[0], Y.shape[0], unbiased)
    X = X - X.mean(axis=0)  # H X: centre each feature
    Y = Y - Y.mean(axis=0)
    return float(_normalise(_hsic_features(X, Y, unbiased),
                            _hsic_features(X, X, unbiased), _hsic_features(Y, Y, unbiased)))


def cka(X, Y, unbiased: bool = False, method: str = "features") -> float:
    """Linear CKA of X (n × d1) and Y (n × d2): ``cka_features`` or, with method="gram",
    ``cka_gram(gram_linear(X), gram_linear(Y))``. Both give the same float to about 1e-12."""
    if method == "features":
        return cka_features(X, Y, unbiased)
    if method == "gram":
        return cka_gram(gram_linear(X), gram_linear(Y), unbiased)
    raise MtnbError(f"unknown CKA method {method!r}; use method='features' or method='gram'.")


def _stacks(features, chunk: int):
    """Yield (label, float64 array (k, n, d)) blocks of ``features``: one per list item, or
    ``chunk`` slices of a stacked (m, n, d) array at a time (so float64 copies stay small)."""
    if isinstance(features, Sequence) and not isinstance(features, (str, bytes)):
        if len(features) == 0:
            raise MtnbError("cka_matrix got no representations; pass a (m, n, d) array or a list of (n, d) arrays.")
        for k, x in enumerate(features):
            yield f"representation {k}", _as_float64(x, f"representation {k}")[None]
        return
    stack = features if hasattr(features, "detach") else np.asarray(features)
    if stack.ndim != 3:
        raise MtnbError(f"cka_matrix got an array of shape {tuple(stack.shape)}; pass a stacked (m, n, d) "
                        "array or a list of (n, d) arrays.")
    for i in range(0, stack.shape[0], chunk):
        label = f"representations {i}..{min(i + chunk, stack.shape[0]) - 1}"
        yield label, _as_float64(stack[i:i + chunk], label, ndim=3)


def cka_matrix(features, unbiased: bool = False, chunk: int = 64) -> np.ndarray:
    """All-pairs linear CKA among m representations of the same n samples, computed at once.

    features: a stacked array (m, n, d) (numpy or torch), or a sequence of m arrays (n, d_i)
    whose widths may differ. Returns the (m, m) float64 matrix C with C[i, j] = cka(X_i, X_j,
    unbiased), symmetric, 1 on the diagonal up to rounding.

    Each representation is converted to float64 and column-centred, and its Gram matrix is
    built and centred once (a stack is converted ``chunk`` representations at a time); the m
    centred Grams are flattened to the rows of G (m × n²) and every HSIC comes from one
    product, S = G Gᵀ; then C = S / sqrt(diag(S) diag(S)ᵀ). Memory: 8·m·n² bytes for G.
    """
    n, grams = None, []
    for label, X in _stacks(features, chunk):
        n = _check_n(X.shape[1] if n is None else n, X.shape[1], unbiased)
        X = X - X.mean(axis=1, keepdims=True)                          # centre each feature (H X)
        grams.append(center_gram(X @ np.swapaxes(X, 1, 2), unbiased))  # centred K_i = X_i X_iᵀ
    G = np.concatenate(grams).reshape(-1, n * n)  # row i: centred K_i, flattened
    S = G @ G.T                                   # S_ij = ⟨K_i, K_j⟩_F = HSIC(X_i, X_j)
    s = np.diag(S).copy()
    if (s <= 0).any():
        raise MtnbError(f"representation {int(np.argmax(s <= 0))} has zero (estimated) variance, e.g. all its "
                        "samples are identical; CKA is undefined for it, so drop it from the list.")
    C = S / np.sqrt(s[:, None] * s[None, :])      # C_ij = S_ij / sqrt(S_ii S_jj)
    return (C + C.T) / 2                          # exactly symmetric
