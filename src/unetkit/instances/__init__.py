"""Instance segmentation from a U-Net: one label per object, touching objects separated.

* :mod:`~unetkit.instances.targets`: the three-class boundary target (background / interior /
  touching border) and a normalised distance map, made from instance ids or a class mask;
* :mod:`~unetkit.instances.validate`: checks of instance truth (integer ids, one connected
  piece per id), one line per problem file;
* :mod:`~unetkit.instances.postprocess`: seeds + watershed on the stitched boundary-class
  probabilities -> a uint16/uint32 label image, with :class:`InstanceParams`;
* :mod:`~unetkit.instances.tune`: the parameters picked on validation images by the DSB score;
* :mod:`~unetkit.instances.table`: the per-object CSV table;
* :mod:`~unetkit.instances.spec`: :class:`InstanceSpec`, what a trained model stores about its
  instance target (metadata key ``"instances"``) and how to read its output channels.

``unetkit.infer.instances.predict_instances(model, image)`` runs a model and all of the above.

Scores (DSB 2018, F1, PQ, SEG, merges and splits) are in :mod:`unetkit.metrics.instances`.
Pure NumPy / SciPy / scikit-image: no module here uses torch (so they run in data loaders).
"""

from __future__ import annotations

from unetkit.instances.postprocess import (
    InstanceParams,
    instances_from_class_map,
    instances_from_probabilities,
    label_dtype,
    label_suffix,
    relabel,
    watershed_labels,
)
from unetkit.instances.spec import InstanceSpec
from unetkit.instances.table import object_table, object_table_csv, write_object_table
from unetkit.instances.targets import (
    BACKGROUND,
    BORDER,
    INTERIOR,
    NUM_BOUNDARY_CLASSES,
    border_pixels,
    boundary_target,
    distance_target,
    instances_from_mask,
)
from unetkit.instances.tune import TuneGrid, TuneResult, tune_instance_params
from unetkit.instances.validate import (
    as_instances,
    check_instances,
    disconnected_ids,
    repair_instances,
    separate_pieces,
)

__all__ = [
    "BACKGROUND",
    "BORDER",
    "INTERIOR",
    "NUM_BOUNDARY_CLASSES",
    "InstanceParams",
    "InstanceSpec",
    "TuneGrid",
    "TuneResult",
    "as_instances",
    "border_pixels",
    "boundary_target",
    "check_instances",
    "disconnected_ids",
    "distance_target",
    "instances_from_class_map",
    "instances_from_mask",
    "instances_from_probabilities",
    "label_dtype",
    "label_suffix",
    "object_table",
    "object_table_csv",
    "relabel",
    "repair_instances",
    "separate_pieces",
    "tune_instance_params",
    "watershed_labels",
    "write_object_table",
]
