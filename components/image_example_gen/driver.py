"""ImageExampleGen's driver: fingerprints the photos the executor will convert.

TFX's FileBasedDriver fingerprints what its one `*/*` glob matches: it stats every entry (a
broken link there ends the run with a traceback) and sees nothing two levels down. This driver
fingerprints `scan.list_photos` instead, the listing the executor converts, so the cache
misses exactly when a converted photo was added, removed, renamed, edited or made readable.
"""

from __future__ import annotations

import json
from typing import Any

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils
from tfx.types import standard_component_specs

from components.image_example_gen import scan


def fingerprint_of(exec_properties: dict[str, Any]) -> str:
    """The fingerprint of the photos of the component's image folder and classes."""
    listing = scan.list_photos(
        exec_properties[standard_component_specs.INPUT_BASE_KEY],
        json.loads(exec_properties["class_names"]),
    )
    return scan.folder_fingerprint(listing.photos)


class Driver(example_gen_driver.FileBasedDriver):
    """FileBasedDriver with the fingerprint of `fingerprint_of`; one span, no versions."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        del pipeline_info, component_info
        exec_properties[utils.SPAN_PROPERTY_NAME] = 0
        exec_properties[utils.VERSION_PROPERTY_NAME] = None
        exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = fingerprint_of(exec_properties)
        return exec_properties
