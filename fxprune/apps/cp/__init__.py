"""The cerebral-palsy prediction model over skeleton sequences: channel attention over body joints
(whose gates read out which joints matter), synthetic data, and the joint-importance read-out."""

from .data import BONES, JOINTS, REST, SkeletonData, joint_index, load_skeleton_npz, synthetic_infant_movements
from .joints import importance_record, plot_skeleton, write_importance
from .model import CPAttentionNet, evaluate_cp, joint_importance, train_cp

__all__ = ["BONES", "JOINTS", "REST", "CPAttentionNet", "SkeletonData", "evaluate_cp", "importance_record",
           "joint_importance", "joint_index", "load_skeleton_npz", "plot_skeleton", "synthetic_infant_movements",
           "train_cp", "write_importance"]
