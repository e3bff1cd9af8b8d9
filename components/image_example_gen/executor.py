"""ImageExampleGen's executor: a Beam job from a folder of images to tf.Example TFRecords.

It converts the files of scan.list_photos, the listing the driver fingerprinted, in one Beam
pass (conversion.py: one tf.Example per image, retrain.py's split, copies kept in one split),
writes each split in the file format the component declares, and then the conversion report
beside the splits (report.py: `conversion_report.json`, `grouped_photos.tfrecord.gz`), whose
counts also go on the Examples artifact. Unreadable files are skipped and reported, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.image_example_gen import conversion, images, report, scan

logger = logging.getLogger(__name__)

# How each file format TFX's write_split names is written. TFX 1.16 knows one,
# FORMAT_TFRECORDS_GZIP (FILE_FORMAT_UNSPECIFIED means it too), and refuses any other.
_TFRECORD_COMPRESSION = {
    write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP): (
        beam.io.filesystem.CompressionTypes.GZIP, ".gz"
    ),
}


def conversion_settings(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The component's parameters, all required: the pipeline passes its DataConfig's values.

    No fallback for a parameter that is absent: the component and this executor ship in the
    same code (one repository, one container image), so no older spec reaches this executor.
    """
    return {
        "class_names": json.loads(exec_properties["class_names"]),
        "testing_percentage": int(exec_properties["testing_percentage"]),
        "validation_percentage": int(exec_properties["validation_percentage"]),
        "max_class_imbalance": float(exec_properties["max_class_imbalance"]),
        # 0 groups byte-identical files only.
        "near_duplicate_distance": int(exec_properties["near_duplicate_distance"]),
    }


def _check_unchanged_since_fingerprint(
    data_dir: str, listing: scan.ClassFiles, exec_properties: dict[str, Any]
) -> None:
    """Stops when the folder changed between the driver's fingerprint and this listing.

    Going on would file these examples in TFX's cache under a fingerprint of other photos.
    A fingerprint not made by our driver (Kubeflow V2 runs TFX's own) cannot be compared.
    """
    recorded = exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME) or ""
    if scan.FINGERPRINT_MARK not in recorded:
        return
    if scan.folder_fingerprint(listing.photos) != recorded:
        raise images.DataDirError(
            f"image folder {images.one_line(data_dir)} changed between its fingerprint and the "
            "conversion (a photo was added, removed or edited meanwhile); run the same command "
            "again once nothing writes to it"
        )


def declared_formats(exec_properties: dict[str, Any]) -> tuple[int, str]:
    """(payload format, file format name) that the component declares; ValueError for one
    this executor cannot write (it writes tf.Examples as TFRecords)."""
    payload_format = exec_properties.get(
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY, example_gen_pb2.FORMAT_TF_EXAMPLE
    )
    if payload_format != example_gen_pb2.FORMAT_TF_EXAMPLE:
        raise ValueError(
            f"ImageExampleGen writes tf.Examples only, not payload format {payload_format}"
        )
    file_format = exec_properties.get(
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED
    )
    return payload_format, write_split.to_file_format_str(file_format)


class Executor(BaseExampleGenExecutor):
    """Converts the images under `input_base` in one Beam pass, with retrain.py's split.

    `Do` is BaseExampleGenExecutor.Do's own steps (the split names, the declared payload and
    file formats, one Beam pipeline that writes every split) with two differences, so it does
    not call the base's Do nor use its GenerateExamplesByBeam hook:
    - no Reshuffle before each write (the base's write_split.WriteSplit has one): on the
      DirectRunner a Reshuffle holds every serialized photo in memory at once (about 580 MB per
      2,436 photos); the paths were already mixed and spread before the reading;
    - the conversion needs the folder listing, which the report reads after the pipeline, and
      writes report records into the output folder: both are passed to conversion.convert_photos
      as arguments, which the base's hook (pipeline, exec_properties) cannot carry.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("Do runs conversion.convert_photos itself (see Executor)")

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        raise NotImplementedError("Do runs conversion.convert_photos itself (see Executor)")

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        payload_format, file_format = declared_formats(exec_properties)
        data_dir = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        settings = conversion_settings(exec_properties)
        listing = scan.list_photos(data_dir, settings["class_names"])
        _check_unchanged_since_fingerprint(data_dir, listing, exec_properties)
        logger.info(
            "ImageExampleGen: converting %d images of %d classes from %s",
            len(listing.photos), len(settings["class_names"]), data_dir,
        )
        examples.split_names = artifact_utils.encode_split_names(list(images.SPLITS))
        compression, suffix = _TFRECORD_COMPRESSION[file_format]
        with self._make_beam_pipeline() as pipeline:
            splits = conversion.convert_photos(
                pipeline, data_dir, listing.photos, settings, report_dir=examples.uri
            )
            for name, records in splits.items():
                path = os.path.join(
                    artifact_utils.get_split_uri([examples], name), write_split.DEFAULT_FILE_NAME
                )
                _ = records | f"WriteSplit[{name}]" >> beam.io.WriteToTFRecord(
                    path, file_name_suffix=suffix, compression_type=compression
                )
        examples_utils.set_payload_format(examples, payload_format)
        examples_utils.set_file_format(examples, file_format)
        written = report.write_report(examples.uri, settings["class_names"], listing, settings)
        _record_counts(examples, written)


def _record_counts(examples, written: dict[str, Any]) -> None:
    """The conversion report's counts, as custom properties of the Examples in ML Metadata."""
    examples.set_int_custom_property("num_images", written["num_images"])
    examples.set_string_custom_property(
        "class_imbalance_ratio", f"{written['class_balance']['ratio']:.2f}"
    )
    examples.set_int_custom_property("num_skipped", len(written["skipped"]))
    for name, value in report.copy_counts(written).items():
        examples.set_int_custom_property(name, value)
    examples.set_string_custom_property("class_names", json.dumps(written["class_names"]))
