"""Evaluation protocols for self-supervised encoders: kNN, linear probe and fine-tuning.

Typical use with a frozen encoder::

    train_x, train_y = extract_features(encoder, train_set, pool="cls")
    test_x, test_y = extract_features(encoder, test_set, pool="cls")
    knn_accuracy(train_x, train_y, test_x, test_y, num_classes=10)  # {"top1": ..., "top5": ...}
    train_linear_probe(train_x, train_y, test_x, test_y, num_classes=10)

and end to end::

    finetune(encoder, train_set, test_set, num_classes=10, layer_decay=0.75)
"""

from ssl_mae.evaluation.features import (
    encode_layers,
    encode_pooled,
    extract_features,
    pool_layers,
    pool_tokens,
)
from ssl_mae.evaluation.finetune import (
    FineTuneClassifier,
    evaluate_classifier,
    finetune,
    layer_id_for_parameter,
    param_groups_layer_decay,
    set_drop_path,
)
from ssl_mae.evaluation.knn import knn_accuracy, knn_predict, standardize_features
from ssl_mae.evaluation.lars import LARS
from ssl_mae.evaluation.linear_probe import LinearProbe, linear_probe_encoder, train_linear_probe
from ssl_mae.evaluation.metrics import topk_accuracy
from ssl_mae.evaluation.protocols import finetune_evaluate, knn_evaluate, linear_evaluate
from ssl_mae.evaluation.schedule import set_learning_rate, warmup_cosine_lr

__all__ = [
    "LARS",
    "FineTuneClassifier",
    "LinearProbe",
    "encode_layers",
    "encode_pooled",
    "evaluate_classifier",
    "extract_features",
    "finetune",
    "finetune_evaluate",
    "knn_accuracy",
    "knn_evaluate",
    "knn_predict",
    "layer_id_for_parameter",
    "linear_evaluate",
    "linear_probe_encoder",
    "param_groups_layer_decay",
    "pool_layers",
    "pool_tokens",
    "set_drop_path",
    "set_learning_rate",
    "standardize_features",
    "topk_accuracy",
    "train_linear_probe",
    "warmup_cosine_lr",
]
