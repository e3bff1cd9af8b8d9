"""The RBF head: its decision values are scikit-learn's, its Keras layer gives its scores,
TFLite quantizes it to int8, and it separates what a linear head cannot."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models import kernel_head, linear_head  # noqa: E402


def _arcs(rows_per_lobe=20, seed=0):
    """Unit 2-d rows on five arcs of a quarter circle, labelled 1, 0, 1, 0, 1: no line
    separates the classes, a kernel does."""
    rng = np.random.default_rng(seed)
    angles, labels = [], []
    for lobe, centre in enumerate(np.radians([5, 25, 45, 65, 85])):
        angles.append(centre + rng.normal(0, np.radians(2), rows_per_lobe))
        labels.append(np.full(rows_per_lobe, (lobe + 1) % 2))
    angles = np.concatenate(angles)
    return np.stack([np.cos(angles), np.sin(angles)], 1), np.concatenate(labels)


def _blobs(seed=0, classes=3, rows=20, dimension=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), rows)
    centres = rng.normal(0, 1, (classes, dimension))
    return np.abs(centres[labels] + rng.normal(0, 0.3, (len(labels), dimension))), labels


def test_decision_values_are_scikit_learns_one_vs_rest_machines():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    features, labels = _blobs()
    design = linear_head.design_matrix([features])
    head = kernel_head.fit(design, labels, 3.0)
    reference = OneVsRestClassifier(SVC(C=3.0, gamma=kernel_head.scale_gamma(design)))
    # libsvm stops at its tolerance (1e-3) on either kernel, so the two solutions differ a little.
    np.testing.assert_allclose(head.decision_function(design),
                               reference.fit(design, labels).decision_function(design),
                               atol=2e-3)
    assert len(head.support) <= len(design)
    np.testing.assert_allclose(head.predict_proba(design).sum(1), 1.0, atol=1e-6)


def test_the_kernel_separates_what_a_line_cannot():
    features, labels = _arcs()
    svm = linear_head.cross_validate([features], labels, 2, (10.0,), kind="svm-rbf")[0]
    logistic = linear_head.cross_validate([features], labels, 2, (10.0,))[0]
    assert svm.accuracy > 0.95 and logistic.accuracy < 0.8


def test_class_weights_move_the_boundary_toward_the_lighter_class():
    features, labels = _arcs(seed=1)
    design = linear_head.design_matrix([features])
    plain = kernel_head.fit(design, labels, 0.1).decision_function(design)
    weighted = kernel_head.fit(design, labels, 0.1, {0: 1.0, 1: 10.0}).decision_function(design)
    assert (weighted[:, 1] > plain[:, 1]).mean() > 0.9


def _layer_scores(head, num_classes, unit_rows):
    layer = kernel_head.kernel_classifier(head, num_classes)
    return layer(unit_rows.astype(np.float32)).numpy()


def test_the_keras_layer_gives_the_heads_scores_and_none_to_a_missing_class():
    features, labels = _blobs(classes=3)
    labels = np.where(labels == 1, 2, labels)  # no photo of class 1
    head = linear_head.fit([features], labels, 3.0, kind="svm-rbf")
    expected = linear_head.predict(head, [features], 3)
    scores = _layer_scores(head, 3, linear_head.l2_normalise(features))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.all(scores[:, 1] < 1e-6)


def test_the_head_needs_two_classes():
    features, _ = _blobs()
    with pytest.raises(ValueError, match="two classes"):
        kernel_head.fit(linear_head.design_matrix([features]), np.zeros(len(features), int), 1.0)


def test_tflite_quantizes_the_layer_to_int8_and_keeps_its_predictions():
    import tensorflow as tf
    import tf_keras

    from models import tflite_export

    features, labels = _blobs(rows=40)
    head = linear_head.fit([features], labels, 3.0, kind="svm-rbf")
    inputs = tf_keras.Input((features.shape[1],))
    outputs = kernel_head.kernel_classifier(head, 3)(
        tf_keras.layers.UnitNormalization()(inputs))
    model = tf_keras.Model(inputs, outputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[np.newaxis].astype(np.float32)]
                                                for row in features)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    content = converter.convert()
    assert tflite_export.float_tensors(content) == []
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predictions = []
    for row in features.astype(np.float32):
        scale, zero = given["quantization"]
        interpreter.set_tensor(given["index"],
                               np.round(row / scale + zero).astype(np.int8)[np.newaxis])
        interpreter.invoke()
        predictions.append(interpreter.get_tensor(taken["index"])[0].argmax())
    expected = model(features.astype(np.float32)).numpy().argmax(1)
    assert np.mean(np.array(predictions) == expected) > 0.95


def test_the_network_takes_the_rbf_head_and_saves_it(tmp_path):
    import tensorflow as tf

    from models.network import TransferModel
    from models.training_config import TrainingConfig
    from tests.support import make_random_hub_mobilenet

    hub_module = make_random_hub_mobilenet(tmp_path / "hub", alpha=0.25, resolution=64)
    transfer = TransferModel(TrainingConfig(str(hub_module), image_size=64,
                                            class_names=("a", "b", "c")), str(hub_module))
    pixels = tf.random.stateless_uniform([12, 64, 80, 3], seed=[3, 4])
    bottlenecks = transfer.feature_extractor(pixels).numpy()
    labels = np.arange(12) % 3
    head = linear_head.fit([bottlenecks], labels, 10.0, kind="svm-rbf")
    transfer.load_head(head)
    expected = linear_head.predict(head, [bottlenecks], 3)
    np.testing.assert_allclose(transfer.model(pixels).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(transfer.head(bottlenecks).numpy(), expected, atol=1e-4)
    tf.saved_model.save(transfer.model, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(restored(pixels, False, None).numpy(), expected, atol=1e-4)


def test_the_temperature_fitted_out_of_fold_sharpens_flat_scores_and_folds_into_the_layer():
    features, labels = _blobs(rows=30)
    mirror = features + np.random.default_rng(5).normal(0, 0.05, features.shape)
    (result,) = linear_head.cross_validate([features, mirror], labels, 3, (3.0,),
                                           kind="svm-rbf")
    assert result.out_of_fold_decisions.shape == (2, len(labels), 3)
    temperature = kernel_head.fit_temperature(result.out_of_fold_decisions, labels)
    assert temperature > 1.5  # decision values of about +-1 are too flat as logits
    head = linear_head.fit([features], labels, 3.0, kind="svm-rbf")
    flat = head.predict_proba(linear_head.l2_normalise(features))
    head.temperature = temperature
    sharp = _layer_scores(head, 3, linear_head.l2_normalise(features))
    assert sharp.max(1).mean() > flat.max(1).mean()
    np.testing.assert_array_equal(sharp.argmax(1), flat.argmax(1))


def test_too_many_rows_for_the_kernel_matrix_fall_back_to_the_logistic_head(monkeypatch, caplog):
    from models import head as head_lib
    from models.training_config import TrainingConfig

    features, labels = _blobs(rows=20)
    split = {"train": ([features], labels), "eval": ([features], labels), "files": None}
    settings = TrainingConfig("/m", class_names=("a", "b", "c"), views=("plain",),
                              head="svm-rbf", head_c=3.0)
    fitted = head_lib.fit_head(settings, split, None)
    assert fitted.kind == "svm-rbf" and isinstance(fitted.fitted, kernel_head.KernelHead)
    assert fitted.fitted.temperature != 1.0
    monkeypatch.setattr(kernel_head, "MAX_TRAINING_ROWS", len(labels) - 1)
    fallen_back = head_lib.fit_head(settings, split, None)
    assert fallen_back.kind == "logistic" == fallen_back.report()["head"]
    assert "using the logistic head" in caplog.text
