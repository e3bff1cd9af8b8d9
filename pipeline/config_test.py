"""Tests of the typed configuration."""

import dataclasses

import pytest

from pipeline import config as config_lib


def test_architecture_maps_to_the_tf_hub_handle():
    assert config_lib.architecture_to_hub_handle("mobilenet_0.50_224") == (
        "https://tfhub.dev/google/imagenet/mobilenet_v1_050_224/feature_vector/5"
    )
    assert config_lib.architecture_to_hub_handle("mobilenet_1.0_128").endswith(
        "mobilenet_v1_100_128/feature_vector/5"
    )
    assert config_lib.parse_architecture("mobilenet_0.25_160") == ("0.25", 160)


@pytest.mark.parametrize("name", ["mobilenet_0.5_224", "mobilenet_1.0_300", "inception_v3", ""])
def test_unknown_architecture_names_the_flag(name):
    with pytest.raises(config_lib.ConfigError, match="--architecture"):
        config_lib.parse_architecture(name)


def test_training_config_round_trips_through_custom_config():
    settings = config_lib.TrainingConfig(model_handle="/m", image_size=160, class_names=("a", "b"),
                                         views=("plain", "mirror", "squash128"))
    custom = settings.to_custom_config()
    assert custom["class_names"] == ["a", "b"] and custom["views"][2] == "squash128"
    assert config_lib.TrainingConfig.from_custom_config({**custom, "code_fingerprint": "x"}) == (
        settings
    )


@pytest.mark.parametrize(
    "changes,flag",
    [
        ({"head_c": -1.0}, "--head-c"),
        ({"head": "tree"}, "--head"),
        ({"train_batch_size": -1}, "--train-batch-size"),
        ({"image_size": 4}, "--image-size"),
        ({"resize": "crop"}, "--resize"),
        ({"views": ("mirror",)}, "--views"),
        ({"views": ("plain", "plain")}, "--views"),
        ({"views": ("plain", "squash4")}, "--views"),
        ({"fine_tune_epochs": -1}, "--fine-tune-epochs"),
        ({"fine_tune_from_block": 14}, "--fine-tune-from-block"),
        ({"random_crop": 100}, "--random-crop"),
        ({"random_scale": -1}, "--random-scale"),
        ({"random_brightness": 150}, "--random-brightness"),
        ({"label_smoothing": 1.0}, "--label-smoothing"),
        ({"class_weights": "sometimes"}, "--class-weights"),
        ({"lr_schedule": "linear"}, "--lr-schedule"),
    ],
)
def test_invalid_training_settings_name_the_flag(changes, flag):
    with pytest.raises(config_lib.ConfigError, match=flag):
        config_lib.TrainingConfig(model_handle="/m", **changes)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"class_names": ("only",)}, "two classes"),
        ({"testing_percentage": 100}, "--testing-percentage"),
        ({"testing_percentage": 60, "validation_percentage": 40}, "below 100"),
        ({"validation_percentage": 0}, "--validation-percentage"),
        ({"near_duplicate_distance": -1}, "--near-duplicate-distance"),
        ({"near_duplicate_distance": 129}, "--near-duplicate-distance"),
    ],
)
def test_invalid_data_settings(changes, message):
    values = {"data_dir": "/d", "class_names": ("a", "b"), **changes}
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.DataConfig(**values)


def test_the_fine_tuner_ignores_the_final_heads_settings_and_fine_tunes_under_logistic():
    expected = config_lib.TrainingConfig("/m", head="logistic")
    for head in ("logistic", "svm-rbf"):
        settings = config_lib.TrainingConfig("/m", head=head, head_c=3.0, average_views=False,
                                             exclude_suspected_label_errors=True)
        assert settings.for_fine_tuning() == expected


def test_trainer_classes_must_match_the_data():
    with pytest.raises(config_lib.ConfigError, match="differ"):
        config_lib.PipelineConfig(
            data=config_lib.DataConfig("/d", ("a", "b")),
            training=config_lib.TrainingConfig("/m", class_names=("b", "a")),
        )


def test_pipeline_paths_derive_from_the_root():
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig("/d", ("a", "b")),
        training=config_lib.TrainingConfig("/m", class_names=("a", "b")),
        pipeline_root="/r",
    )
    assert config.metadata_path == "/r/metadata.db"
    assert config.serving_model_dir == "/r/serving_model"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pipeline_root = "/elsewhere"


@pytest.mark.parametrize("name", ["tfx_poets", "Flowers", "-x", ""])
def test_pipeline_names_follow_kubeflows_rule(name):
    with pytest.raises(config_lib.ConfigError, match="--pipeline-name"):
        config_lib.PipelineConfig(
            data=config_lib.DataConfig("/d", ("a", "b")),
            training=config_lib.TrainingConfig("/m", class_names=("a", "b")),
            pipeline_name=name,
        )
