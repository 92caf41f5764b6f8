"""A *synthetic* infant-movement data set in the layout of pose-estimator output (N x C x T x V).

This is not clinical data. It exists so that the skeleton model, its joint-importance read-out and
pruning through channel attention can be tested and demonstrated without a download, with a
ground truth to check against: the class signal is planted in known joints.

Layout: 18 joints in OpenPose's COCO-18 order (``JOINTS``), C = 3 channels per joint (x, y and a
detection confidence, as pose estimators write them), T frames at ``fps``.

Generator (per sample):

- a supine-infant rest pose (``REST``), jittered per sample (body size, position);
- every joint moves around its rest position as a sum of two sinusoids per axis with random
  frequencies in 0.3-2.5 Hz, random phases and a random amplitude ``U(0.3, 1.2) * scale(joint)``
  (limb joints move more than the trunk and head: ``AMPLITUDE``) — irregular, fidgety-like motion;
- a slow random-walk drift of the whole body, Gaussian measurement noise on every coordinate, and a
  confidence channel drawn from ``U(0.6, 1.0)`` that carries no class information;
- class 1 ("at risk") differs **only in the planted joints** (default: left wrist and right ankle):
  their motion is cramped and stereotyped — amplitude ``U(0.05, 0.3) * scale``, and one shared
  slow frequency (0.4 Hz) in phase across the planted joints. Class 0's planted joints move like
  every other joint.

Every other joint has the same distribution in both classes, so a model can only separate the
classes through the planted joints, and an importance read-out should rank them first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import ModelError, PlanError

__all__ = ["AMPLITUDE", "BONES", "DEFAULT_PLANTED", "JOINTS", "REST", "SkeletonData", "joint_index",
           "load_skeleton_npz", "synthetic_infant_movements"]

log = logging.getLogger(__name__)

JOINTS: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
    "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
BONES: tuple[tuple[int, int], ...] = (
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (0, 14), (14, 16), (0, 15), (15, 17),
)
# rest pose of an infant lying on its back, image coordinates (x right, y down), body height ~ 2
REST = np.array([
    [0.00, -0.95], [0.00, -0.60], [-0.30, -0.58], [-0.55, -0.30], [-0.65, 0.00], [0.30, -0.58], [0.55, -0.30],
    [0.65, 0.00], [-0.18, 0.15], [-0.30, 0.55], [-0.35, 0.95], [0.18, 0.15], [0.30, 0.55], [0.35, 0.95],
    [-0.07, -1.02], [0.07, -1.02], [-0.15, -0.98], [0.15, -0.98],
], dtype=np.float64)
# motion amplitude per joint (trunk and head move little, hands and feet most)
AMPLITUDE = np.array([0.02, 0.01, 0.02, 0.06, 0.10, 0.02, 0.06, 0.10, 0.02, 0.06, 0.10, 0.02, 0.06, 0.10,
                      0.02, 0.02, 0.02, 0.02], dtype=np.float64)
DEFAULT_PLANTED = ("l_wrist", "r_ankle")


@dataclass
class SkeletonData:
    """Skeleton sequences ``x`` (N x 3 x T x V, float32), labels ``y`` (N, int64), the joint names
    and the indices of the joints that carry the class signal (empty for real data)."""

    x: torch.Tensor
    y: torch.Tensor
    joints: tuple[str, ...] = JOINTS
    planted: tuple[int, ...] = ()
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def split(self, fraction: float = 0.75, seed: int = 0) -> tuple[SkeletonData, SkeletonData]:
        """Stratified-free random split into (train, test)."""
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        k = int(round(fraction * len(self)))
        a, b = perm[:k], perm[k:]
        return (SkeletonData(self.x[a], self.y[a], self.joints, self.planted, self.meta),
                SkeletonData(self.x[b], self.y[b], self.joints, self.planted, self.meta))

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        """A list of (x, y) batches."""
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)) if shuffle \
            else torch.arange(len(self))
        return [(self.x[idx[i:i + batch_size]], self.y[idx[i:i + batch_size]])
                for i in range(0, len(self), batch_size)]


def joint_index(names: Sequence[str | int]) -> tuple[int, ...]:
    out = []
    for n in names:
        if isinstance(n, int) or (isinstance(n, str) and n.isdigit()):
            i = int(n)
            if not 0 <= i < len(JOINTS):
                raise PlanError(f"joint index {i} out of range 0..{len(JOINTS) - 1}")
            out.append(i)
        elif n in JOINTS:
            out.append(JOINTS.index(n))
        else:
            raise PlanError(f"unknown joint {n!r}; joints are {', '.join(JOINTS)}")
    return tuple(out)


def synthetic_infant_movements(n: int = 600, *, frames: int = 64, fps: float = 16.0,
                               planted: Sequence[str | int] = DEFAULT_PLANTED, noise: float = 0.01,
                               seed: int = 0) -> SkeletonData:
    """``n`` synthetic sequences, half of each class (see the module docstring for the model)."""
    if n < 2:
        raise PlanError("synthetic_infant_movements needs n >= 2 (one sample per class at least)")
    planted_idx = joint_index(planted)
    rng = np.random.default_rng(seed)
    V, T = len(JOINTS), frames
    t = np.arange(T) / fps
    y = np.arange(n) % 2
    rng.shuffle(y)
    x = np.empty((n, 3, T, V), dtype=np.float64)
    for i in range(n):
        size = rng.uniform(0.85, 1.15)
        centre = rng.normal(0.0, 0.1, size=2)
        rest = REST * size + centre
        amp = rng.uniform(0.3, 1.2, size=V) * AMPLITUDE
        freq = rng.uniform(0.3, 2.5, size=(V, 2, 2))   # joint, axis, component
        phase = rng.uniform(0, 2 * np.pi, size=(V, 2, 2))
        weight = rng.dirichlet([2.0, 2.0], size=(V, 2))  # how the two components share the amplitude
        if y[i] == 1:  # cramped-synchronised: small, slow, in phase across the planted joints
            p = np.array(planted_idx)
            amp[p] = rng.uniform(0.05, 0.3, size=len(p)) * AMPLITUDE[p]
            freq[p] = 0.4
            phase[p] = rng.uniform(0, 2 * np.pi)
            weight[p] = [1.0, 0.0]
        wave = np.sin(2 * np.pi * freq[None] * t[:, None, None, None] + phase[None])  # T, V, 2, 2
        motion = (wave * weight[None]).sum(-1) * amp[None, :, None]                   # T, V, 2
        drift = np.cumsum(rng.normal(0.0, 0.003, size=(T, 1, 2)), axis=0)
        pos = rest[None] + motion + drift + rng.normal(0.0, noise, size=(T, V, 2))
        x[i, 0], x[i, 1] = pos[..., 0], pos[..., 1]
        x[i, 2] = rng.uniform(0.6, 1.0, size=(T, V))
    meta = {"generator": "synthetic_infant_movements", "n": n, "frames": frames, "fps": fps, "noise": noise,
            "seed": seed, "planted": [JOINTS[j] for j in planted_idx]}
    return SkeletonData(torch.from_numpy(x).float(), torch.from_numpy(y).long(), JOINTS, planted_idx, meta)


def load_skeleton_npz(path: str | Path) -> SkeletonData:
    """Real data from an ``.npz`` with ``x`` (N x C x T x V) and ``y`` (N,), optionally ``joints``
    (V names; default COCO-18 when V == 18)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file (expected an .npz with arrays x: N x C x T x V and y: N)")
    with np.load(path, allow_pickle=False) as z:
        if "x" not in z or "y" not in z:
            raise ModelError(f"{path}: needs arrays 'x' (N x C x T x V) and 'y' (N,), found {sorted(z.files)}")
        x, y = z["x"], z["y"]
        joints = tuple(str(j) for j in z["joints"]) if "joints" in z else None
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ModelError(f"{path}: x must be N x C x T x V and y N labels; got x {x.shape}, y {y.shape}")
    if joints is None:
        joints = JOINTS if x.shape[3] == len(JOINTS) else tuple(f"joint{j}" for j in range(x.shape[3]))
    if len(joints) != x.shape[3]:
        raise ModelError(f"{path}: {len(joints)} joint names for V={x.shape[3]} joints")
    return SkeletonData(torch.from_numpy(x).float(), torch.from_numpy(y).long(), joints, (), {"path": str(path)})
