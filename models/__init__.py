"""The module code the Transform and the Trainer load: feature and contract names
(`features`), the training settings (`training_config`), `preprocessing_fn`, the network, the
training phases and the export. Imports neither `pipeline` nor `components`
(tests/test_layers.py), as in TFX's taxi template."""
