"""The RBF head: one-vs-rest support vector machines on L2-normalised MobileNet features.

scikit-learn's SVC with an RBF kernel, one binary machine per class against the others (as
OneVsRestClassifier fits them, here one by one so that each takes its class weight). Each
class's decision value is then a weighted sum of kernels against the support vectors, so the
whole head is two matrix products and an exp, which a Keras layer (`kernel_classifier`) and
TFLite's int8 kernels compute. On unit rows |a - b|^2 = 2 - 2 a.b, so the kernel is
exp(2 gamma (a.b - 1)). Scores are the softmax of the decision values times a temperature
fitted to the cross-validation's out-of-fold decisions (`fit_temperature`), so that they
are probabilities the label check (models/label_issues.py) can read; the temperature folds
into the exported coefficients, and their argmax is the machines' prediction. Cross-validated
on the shared photos it beat the logistic regression by 1.7 points (BENCHMARKS.md, "The RBF
head").
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

# The machines train on the kernel matrix of their rows, computed once per fit and shared by
# the classes' machines: 30x faster than libsvm computing kernels itself (0.5 s against 15.7 s
# for 3,928 rows here), but N^2 float64. Above this many rows (photos x views; 290 MB) the
# Trainer uses the logistic head instead.
MAX_TRAINING_ROWS = 6000


def scale_gamma(design: np.ndarray) -> float:
    """scikit-learn's gamma="scale", 1 / (features x variance), from the training rows."""
    variance = float(design.var())
    return 1.0 / (design.shape[1] * variance) if variance > 0 else 1.0


@dataclasses.dataclass
class KernelHead:
    """A fitted RBF head, in the arrays the exported layer holds."""

    support: np.ndarray  # [M, D] unit rows: every machine's support vectors, once
    coefficients: np.ndarray  # [M, K]: each class's dual coefficients (0 where not its SV)
    intercept: np.ndarray  # [K]
    gamma: float
    classes_: np.ndarray  # the labels the columns stand for, as sklearn's heads have them
    temperature: float = 1.0  # scores = softmax(temperature x decision values)

    def decision_function(self, design: np.ndarray) -> np.ndarray:
        return rbf_kernel(design, self.support, self.gamma) @ self.coefficients + self.intercept

    def predict_proba(self, design: np.ndarray) -> np.ndarray:
        return softmax(self.temperature * self.decision_function(design))


def rbf_kernel(rows: np.ndarray, others: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma |a - b|^2) = exp(2 gamma (a.b - 1)) for unit rows, [len(rows), len(others)];
    computed in place, so one such array exists (the train rows' kernel matrix is N^2)."""
    kernel = rows @ others.T
    kernel -= 1.0
    kernel *= 2.0 * gamma
    return np.exp(kernel, out=kernel)


def softmax(logits: np.ndarray) -> np.ndarray:
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def fit_temperature(decisions_by_view: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the log loss of mean-over-views softmax(T x decisions).

    `decisions_by_view`: [views, N, classes] out-of-fold decision values, as serving averages
    the views' scores. Searched over 0.1-1000 (a decision value's scale is about 1).
    """
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(labels))

    def log_loss(log_temperature):
        scores = softmax(np.exp(log_temperature) * decisions_by_view).mean(axis=0)
        return -np.mean(np.log(np.maximum(scores[rows, labels], 1e-12)))

    found = minimize_scalar(log_loss, bounds=(np.log(0.1), np.log(1000.0)), method="bounded")
    return float(np.exp(found.x))


def fit(design: np.ndarray, labels: np.ndarray, c: float, class_weight=None) -> KernelHead:
    """One-vs-rest RBF SVMs on unit rows `design` [N, D] (float64); `class_weight` as the
    logistic head takes it ({label: weight} or None)."""
    from sklearn.svm import SVC

    gamma = scale_gamma(design)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("the RBF head needs photos of at least two classes")
    # Each row weighs its own class's weight in every machine, as in the logistic head.
    row_weights = None
    if class_weight:
        row_weights = np.array([class_weight.get(int(label), 1.0) for label in labels])
    kernel = rbf_kernel(design, design, gamma)
    machines = []
    for label in classes:
        machine = SVC(C=c, kernel="precomputed")
        machines.append(machine.fit(kernel, (labels == label).astype(int),
                                    sample_weight=row_weights))
    del kernel
    rows = np.unique(np.concatenate([machine.support_ for machine in machines]))
    position = {row: index for index, row in enumerate(rows)}
    coefficients = np.zeros((len(rows), len(classes)))
    intercept = np.zeros(len(classes))
    for column, machine in enumerate(machines):
        # SVC's binary decision is positive for label 1, the machine's own class.
        coefficients[[position[row] for row in machine.support_], column] = machine.dual_coef_[0]
        intercept[column] = machine.intercept_[0]
    return KernelHead(design[rows].astype(np.float32), coefficients.astype(np.float32),
                      intercept.astype(np.float32), gamma, classes)


def layer_weights(head: KernelHead, num_classes: int) -> list[np.ndarray]:
    """[support^T [D, M], coefficients [M, num_classes], intercept [num_classes]] for
    `KernelClassifier`; a class the head never saw gets an intercept far below the others."""
    coefficients = np.zeros((len(head.support), num_classes), np.float32)
    intercept = np.full((num_classes,), -1e4, np.float32)
    # softmax(T (K C + b)) = softmax(K (T C) + T b): the temperature costs no op.
    coefficients[:, head.classes_] = head.temperature * head.coefficients
    intercept[head.classes_] = head.temperature * head.intercept
    return [head.support.T.copy(), coefficients, intercept]


def kernel_classifier(head: KernelHead, num_classes: int, name: str = "classifier"):
    """A Keras layer computing the head's scores from unit feature rows."""
    import tf_keras

    class KernelClassifier(tf_keras.layers.Layer):
        def __init__(self, support_count, dimension, gamma, **kwargs):
            super().__init__(**kwargs)
            self.support_count, self.dimension, self.gamma = support_count, dimension, gamma

        def build(self, input_shape):
            self.support = self.add_weight("support", (self.dimension, self.support_count),
                                           trainable=False)
            self.coefficients = self.add_weight("coefficients",
                                                (self.support_count, num_classes))
            self.intercept = self.add_weight("intercept", (num_classes,))
            super().build(input_shape)

        def call(self, features):
            import tensorflow as tf

            kernel = tf.exp(2.0 * self.gamma * (tf.matmul(features, self.support) - 1.0))
            return tf.nn.softmax(tf.matmul(kernel, self.coefficients) + self.intercept)

        def get_config(self):
            return {**super().get_config(), "support_count": self.support_count,
                    "dimension": self.dimension, "gamma": self.gamma}

    layer = KernelClassifier(len(head.support), head.support.shape[1], head.gamma, name=name)
    layer.build((None, head.support.shape[1]))
    support, coefficients, intercept = layer_weights(head, num_classes)
    layer.support.assign(support)
    layer.coefficients.assign(coefficients)
    layer.intercept.assign(intercept)
    return layer
