"""Reading COCO detection JSON (e.g. the gender-split ``gender_{women,men}_{split}.json``) validated as a schema.

Every error is a `DataFormatError` naming the file and the JSON path (``annotations[12].bbox``). Checked: the top
level is an object with ``images``, ``annotations`` and ``categories`` lists; each image has an int ``id`` and a
non-empty string ``file_name``; each category an int ``id`` and a string ``name``; each annotation an int ``id``,
an ``image_id`` present in ``images``, a ``category_id`` present in ``categories`` and a ``bbox`` of four finite
non-negative numbers ``[x, y, w, h]`` (not strings, booleans, NaN or infinity); ``iscrowd`` 0/1 and ``area`` a
finite non-negative number when present. Repeated image ids, image file names, category ids or annotation ids are
errors naming both places unless ``allow_duplicates=True`` (then kept and counted in the log).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import DataFormatError
from .text import Duplicates, json_path, read_json


def read_coco_json(path: str | Path, allow_duplicates: bool = False) -> dict:
    """Parse and validate a COCO detection JSON; returns the parsed object (``info`` defaults to ``{}``)."""
    path = Path(path)
    data = read_json(path)
    validate_coco(data, path, allow_duplicates)
    data.setdefault("info", {})
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_coco(data: Any, path: str | Path, allow_duplicates: bool = False) -> None:
    """Raise `DataFormatError` (file + JSON path) on the first schema violation of a COCO detection object."""
    path = Path(path)

    def fail(message: str, where: str):
        raise DataFormatError(path, message, key=where)

    if not isinstance(data, dict):
        fail(f"the top level must be an object with images/annotations/categories, got {type(data).__name__}",
             "(top)")
    for name in ("images", "annotations", "categories"):
        if not isinstance(data.get(name), list):
            fail("missing or not a list (a COCO detection file has images, annotations and categories lists)", name)

    def entries(name: str):
        for i, entry in enumerate(data[name]):
            where = json_path(name, i)
            if not isinstance(entry, dict):
                fail(f"must be an object, got {type(entry).__name__}", where)
            yield where, entry

    def require_int(entry: dict, field: str, where: str) -> int:
        if not _is_int(entry.get(field)):
            fail(f"must be an integer, got {entry.get(field)!r}" if field in entry else "missing",
                 json_path(where, field))
        return entry[field]

    image_ids = Duplicates(path, "image id", allow_duplicates)
    file_names = Duplicates(path, "image file_name", allow_duplicates)
    for where, image in entries("images"):
        image_ids.see(require_int(image, "id", where), json_path(where, "id"))
        name = image.get("file_name")
        if not isinstance(name, str) or not name.strip():
            fail(f"must be a non-empty string, got {name!r}" if "file_name" in image else "missing",
                 json_path(where, "file_name"))
        file_names.see(name, json_path(where, "file_name"))
        for field in ("width", "height"):
            if field in image and not (_is_int(image[field]) and image[field] > 0):
                fail(f"must be a positive integer, got {image[field]!r}", json_path(where, field))

    category_ids = Duplicates(path, "category id", allow_duplicates)
    for where, category in entries("categories"):
        category_ids.see(require_int(category, "id", where), json_path(where, "id"))
        if not isinstance(category.get("name"), str):
            fail(f"must be a string, got {category.get('name')!r}" if "name" in category else "missing",
                 json_path(where, "name"))

    annotation_ids = Duplicates(path, "annotation id", allow_duplicates)
    for where, ann in entries("annotations"):
        annotation_ids.see(require_int(ann, "id", where), json_path(where, "id"))
        if require_int(ann, "image_id", where) not in image_ids.first:
            fail(f"image_id {ann['image_id']} is not the id of any entry of images", json_path(where, "image_id"))
        if require_int(ann, "category_id", where) not in category_ids.first:
            fail(f"category_id {ann['category_id']} is not the id of any entry of categories "
                 f"({sorted(category_ids.first)})", json_path(where, "category_id"))
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) and v >= 0 for v in bbox)):
            fail(f"must be [x, y, w, h]: four finite non-negative numbers, got {bbox!r}" if "bbox" in ann
                 else "missing", json_path(where, "bbox"))
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
            fail(f"must be 0 or 1, got {ann['iscrowd']!r}", json_path(where, "iscrowd"))
        if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
            fail(f"must be a finite non-negative number, got {ann['area']!r}", json_path(where, "area"))
    for duplicates in (image_ids, file_names, category_ids, annotation_ids):
        duplicates.report()
