"""Classify images with a pushed tfx-poets model; see `python label_image.py -h`."""

from tools.label_image import main

raise SystemExit(main())
