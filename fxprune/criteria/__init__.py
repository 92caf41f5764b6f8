"""Importance criteria: functions of a channel group (and, where needed, the model and
calibration data) returning one score per class. Higher score = more important.

Every criterion scores a channel with *all* the weights that disappear with it: producer rows,
consumer columns and norm entries of every member parameter axis of its group. How the members
are combined is the group *reduction* (``Plan(criterion_options={"reduction": ...})``):

- ``sum`` (default): the criterion of the concatenation of all the channel's weights
  (l1: sum of |w|; l2: norm of the concatenated vector);
- ``mean``: the mean over member tensors of the per-tensor criterion;
- ``max``: the maximum over member tensors.

Register new ones with ``@register_criterion("name", ...)``.
"""

from . import activations, cpmc, magnitude, random  # noqa: F401  (the built-in criteria register themselves)
from .base import CRITERIA, REDUCTIONS, CriterionSpec, ScoringContext, register_criterion, score, score_groups

__all__ = ['CRITERIA', 'REDUCTIONS', 'CriterionSpec', 'ScoringContext', 'register_criterion', 'score', 'score_groups']
