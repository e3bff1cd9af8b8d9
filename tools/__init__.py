"""User commands on a pipeline's output: label_image (classify photos with a pushed model),
inspect_metadata (what ML Metadata recorded) and tensorboard (the training curves)."""
