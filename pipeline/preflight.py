"""Preflight checks of the retrain command line that read what the pipeline will use: the
flower photos (downloaded when no --data-dir is given), the TF Hub module (resolved to a local
SavedModel) and what that module's SavedModel says of its input size and architecture.

Each failure is a CliError: one line naming the flag to fix, never a traceback.
"""

from __future__ import annotations

import os

from models import features
from pipeline import config as config_lib


class CliError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


def download_flower_photos(cache_dir: str) -> str:
    """The flower_photos folder, downloaded and extracted once into cache_dir."""
    target = os.path.join(cache_dir, "datasets", "flower_photos")
    if os.path.isdir(target):
        return target
    import tf_keras

    try:
        tf_keras.utils.get_file(
            "flower_photos.tgz", config_lib.FLOWER_PHOTOS_URL, extract=True, cache_dir=cache_dir
        )
    except Exception as error:
        raise CliError(
            f"could not download {config_lib.FLOWER_PHOTOS_URL} ({_first_line(error)}); "
            "offline? pass --data-dir <folder with one subfolder per class>"
        ) from None
    return target


def resolve_model_handle(handle: str, cache_dir: str) -> str:
    """A local SavedModel path for a TF Hub handle (downloaded once) or a local path."""
    if "://" not in handle:
        if not os.path.isfile(os.path.join(handle, "saved_model.pb")):
            raise CliError(
                f"--model-handle {handle}: no saved_model.pb there; pass a TF Hub handle or "
                "a SavedModel folder of an image feature vector"
            )
        return os.path.abspath(handle)
    os.environ.setdefault("TFHUB_CACHE_DIR", os.path.join(cache_dir, "tfhub_modules"))
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as error:
        raise CliError(
            f"could not download the TF Hub module {handle} ({_first_line(error)}); "
            "offline? pass --model-handle <local SavedModel folder>"
        ) from None


def _saved_model_proto(model_path: str):
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    path = os.path.join(model_path, "saved_model.pb")
    try:
        with open(path, "rb") as proto_file:
            saved_model.ParseFromString(proto_file.read())
    except DecodeError:
        raise CliError(
            f"--model-handle {model_path}: {path} is not a SavedModel; pass a TF Hub handle or "
            "a SavedModel folder of an image feature vector"
        ) from None
    return saved_model


def module_image_size(model_path: str) -> int | None:
    """The square input resolution a local image module's signatures fix, or None when any
    size works or the SavedModel does not say (e.g. no serving signature)."""
    for meta_graph in _saved_model_proto(model_path).meta_graphs:
        for signature in meta_graph.signature_def.values():
            for tensor in signature.inputs.values():
                dims = [dim.size for dim in tensor.tensor_shape.dim]
                if len(dims) == 4 and dims[1] > 0 and dims[1] == dims[2]:
                    return dims[1]
    return None


def module_is_mobilenet_v1(model_path: str) -> bool:
    """Whether the module's variables carry tf_keras's MobileNet V1 names, so that
    models/resolution_free.py can rebuild it at any input size."""
    names = {
        node.variable.name.split(":")[0]
        for meta_graph in _saved_model_proto(model_path).meta_graphs
        for node in meta_graph.object_graph_def.nodes
        if node.WhichOneof("kind") == "variable"
    }
    blocks = {f"conv_{kind}_{block}" for kind in ("dw", "pw") for block in range(1, 14)}
    return "conv1/kernel" in names and all(
        any(name.startswith(block + "/") for name in names) for block in blocks
    )


def choose_image_size(flag: int, resize: str | None, module_size: int | None,
                      resizable: bool, model_path: str) -> tuple[int, str]:
    """(image size, resize mode): the flags', else the defaults; a fixed-size module that
    cannot be rebuilt takes only its own size, squashed."""
    default = config_lib.defaults_of(config_lib.TrainingConfig)
    if module_size is None or resizable:
        return flag or default["image_size"], resize or default["resize"]
    if (flag and flag != module_size) or resize == "short-side":
        asked = f"--image-size {flag}" if flag and flag != module_size else "--resize short-side"
        raise CliError(
            f"{asked}: the module {model_path} takes only {module_size}x{module_size} images "
            f"and is not a MobileNet V1 that can be rebuilt at another size; pass --image-size "
            f"{module_size} --resize squash, or leave both out"
        )
    return module_size, "squash"


def choose_views(flag: str | None, resizable: bool, model_path: str) -> tuple[str, ...]:
    """--views, else the default; squashed views need a module that takes any size."""
    default = config_lib.defaults_of(config_lib.TrainingConfig)
    views = tuple(v.strip() for v in flag.split(",") if v.strip()) if flag else default["views"]
    if resizable:
        return views
    fixed = tuple(v for v in views if v in (features.PLAIN_VIEW, features.MIRROR_VIEW))
    if flag and fixed != views:
        raise CliError(
            f"--views {flag}: the module {model_path} takes only its own size, so squash<N> "
            f"views cannot be shown to it; pass --views {','.join(fixed)}"
        )
    return fixed


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
