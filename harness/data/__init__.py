"""The data layer: named datasets in three tiers, users' layouts, a tensor cache and a fetcher.

Tiers (see DESIGN.md, "Data"):

- **embedded** (no files needed): ``digits``, ``mnist5k``, ``breast_cancer``, ``wine`` and the generated
  ``rotated_digits``, ``colored_digits``, ``corrupted_digits``, ``synthetic_ms`` (SYNTHETIC);
- **real** under ``$HARNESS_DATA``: ``pacs``, ``rsscn7``, ``usps``, ``mnist``, ``digits_multi``;
- **user** layouts: :func:`load_imagefolder`, :func:`load_wilds`, :func:`load_eurosat`,
  :func:`load_ssb_splits`, and the named ``eurosat``, ``eurosat_ms``, ``waterbirds`` when present.

``load(name, **kwargs)`` returns an :class:`ArrayDataset`: images float32 in [0, 1] ``N x C x H x W``,
tables float32 ``N x D``, labels int64; ``domain``/``group`` with names where the set has them; ``meta``
with at least ``source``, ``synthetic`` and ``tier``. An absent real set raises ``DataMissing``.
"""

from harness.data import embedded, generated, real  # noqa: F401 (importing registers the loaders)
from harness.data.cache import cached, finalize
from harness.data.dataset import ArrayDataset, Split, tensor_digest
from harness.data.decode import decode_images, read_idx
from harness.data.layouts import SSBSplit, load_eurosat, load_imagefolder, load_ssb_splits, load_wilds
from harness.data.paths import cache_root, data_root
from harness.data.registry import DatasetInfo, dataset_info, dataset_names, load, register_dataset
from harness.data.transforms import channel_stats, check_bands, normalize

__all__ = [
    "ArrayDataset",
    "DatasetInfo",
    "SSBSplit",
    "Split",
    "cache_root",
    "cached",
    "channel_stats",
    "check_bands",
    "data_root",
    "dataset_info",
    "dataset_names",
    "decode_images",
    "finalize",
    "load",
    "load_eurosat",
    "load_imagefolder",
    "load_ssb_splits",
    "load_wilds",
    "normalize",
    "read_idx",
    "register_dataset",
    "tensor_digest",
]
