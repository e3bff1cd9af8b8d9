"""AtomicPusher's executor: TFX's Pusher, but a pushed version folder is complete or absent.

TFX's Pusher copies the model file by file into `<base>/<version>/` (saved_model.pb last), so a
run killed mid-copy leaves a half-written version folder behind for good. Here the copy goes to
a hidden `.partial-<version>` folder beside the versions, which is renamed to `<version>` once
complete: a rename within one local folder is atomic. Model servers (TF Serving, label_image)
only load numbered folders, so a leftover partial copy is never served; the next push removes it.

The newest version is not pushed again when it holds the same files (the first rerun after a
push re-blesses the cached model against itself), and the model is not archived a second time
into the PushedModel artifact: the Trainer's Model artifact already keeps it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher.links import link_or_copy

PARTIAL_PREFIX = ".partial-"


def tree_fingerprint(directory: str) -> str:
    """SHA-256 over the relative paths and bytes of every file under `directory`."""
    digest = hashlib.sha256()
    for parent, folders, files in os.walk(directory):
        folders.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            digest.update(os.path.relpath(path, directory).encode())
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def pushed_versions(base_directory: str) -> list[str]:
    """The numbered version folders under `base_directory`, oldest first."""
    if not os.path.isdir(base_directory):
        return []
    names = [
        name for name in os.listdir(base_directory)
        if name.isdigit() and os.path.isdir(os.path.join(base_directory, name))
    ]
    return sorted(names, key=int)


def remove_partial_pushes(base_directory: str) -> list[str]:
    """Deletes copies left by pushes that were killed; returns their names."""
    if not os.path.isdir(base_directory):
        return []
    partial = sorted(
        name for name in os.listdir(base_directory) if name.startswith(PARTIAL_PREFIX)
    )
    for name in partial:
        shutil.rmtree(os.path.join(base_directory, name), ignore_errors=True)
    return partial


def next_version(base_directory: str, now: float) -> str:
    """A Unix-time version, above every existing one (two pushes in one second stay apart)."""
    existing = pushed_versions(base_directory)
    newest = int(existing[-1]) if existing else 0
    return str(max(int(now), newest + 1))


def push_atomically(model_path: str, base_directory: str, version: str) -> str:
    """Copies `model_path` to `base_directory/version` all at once; returns that folder."""
    os.makedirs(base_directory, exist_ok=True)
    partial = os.path.join(base_directory, f"{PARTIAL_PREFIX}{version}")
    final = os.path.join(base_directory, version)
    shutil.copytree(model_path, partial, copy_function=link_or_copy)
    os.rename(partial, final)
    return final


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to a local folder atomically; other destinations as TFX does."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        base_directory = destination.filesystem.base_directory
        if destination.WhichOneof("destination") != "filesystem" or "://" in base_directory:
            # No atomic rename on object stores: TFX's copy writes saved_model.pb last.
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed_model = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed_model)
            return
        model_path = self.GetModelPath(input_dict)
        for name in remove_partial_pushes(base_directory):
            logging.warning("Pusher: removed %s, left by an interrupted push", name)
        versions = pushed_versions(base_directory)
        newest = os.path.join(base_directory, versions[-1]) if versions else ""
        if newest and tree_fingerprint(newest) == tree_fingerprint(model_path):
            logging.info("Pusher: %s already holds this model; not pushed again", newest)
            version, serving_path = versions[-1], newest
        else:
            version = next_version(base_directory, time.time())
            serving_path = push_atomically(model_path, base_directory, version)
            logging.info("Pusher: model pushed to %s", serving_path)
        # TFX's Pusher also copies the model into this artifact; a marker is enough here.
        io_utils.write_string_file(os.path.join(pushed_model.uri, "pushed_to"), serving_path)
        self._MarkPushed(pushed_model, pushed_destination=serving_path, pushed_version=version)
