"""Series thumbnails for the DICOM browser: the middle image, windowed, as a small uint8 array.

For the local DICOM database the middle instance is read from its file; for a DICOMweb server
it is fetched with WADO-RS, rendered by the server (``/rendered``, PNG, scaled to the
thumbnail) when it can, else as the DICOM instance, windowed here. Either way the result is a
2-D ``uint8`` array (rows, columns) no larger than the asked size, aspect kept.

The calls block (disk, network, decoding): run them off the GUI thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .dicom_search import DicomSearch, DicomWebSearch, LocalDatabaseSearch, SeriesRow
from .dicomweb_connection import ServerAuthError, ServerError, ServerUnreachable, server_errors
from .errors import CaseIteratorError
from .tasks import CancelToken, check_cancel

#: Longest side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 96


class ThumbnailError(CaseIteratorError):
    """No thumbnail can be made of a series; the message says which series and why."""


def window_to_uint8(pixels: np.ndarray, ds: Dataset | None = None) -> np.ndarray:
    """Map stored values to 0..255 with the header's window, else the 1st-99th percentiles.

    Parameters
    ----------
    pixels
        A 2-D image (stored values), or (rows, columns, 3) colour.
    ds
        The header: RescaleSlope/Intercept, WindowCenter/Width, PhotometricInterpretation.
    """
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        # Colour: luminance is enough for a thumbnail of the greyscale browser.
        rgb = pixels[..., :3].astype(np.float32)
        return np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0, 255).astype(np.uint8)
    values = pixels.astype(np.float32)
    if ds is not None:
        values = values * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0
        )
    low = high = None
    if ds is not None and "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = ds.WindowCenter, ds.WindowWidth
        centre = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        if width > 1:
            low, high = centre - width / 2, centre + width / 2
    if low is None or high is None:
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + 1
    scaled = np.clip((values - low) / (high - low), 0, 1) * 255
    out = scaled.round().astype(np.uint8)
    if ds is not None and str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out
    return out


def shrink(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Reduce ``image`` so its longest side is at most ``size`` (block means; aspect kept)."""
    rows, cols = image.shape[:2]
    factor = int(np.ceil(max(rows, cols) / size))
    if factor <= 1:
        return image
    rows_c, cols_c = rows // factor * factor, cols // factor * factor
    if rows_c == 0 or cols_c == 0:
        return image[::factor, ::factor]
    blocks = image[:rows_c, :cols_c].reshape(rows_c // factor, factor, cols_c // factor, factor)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def thumbnail_of_dataset(ds: Dataset, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The windowed, shrunk middle frame of a DICOM instance.

    Raises
    ------
    ThumbnailError
        When the instance has no pixels or they cannot be decoded.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ThumbnailError(f"instance {ds.get('SOPInstanceUID', '?')} holds no image")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise ThumbnailError(
            f"the image of instance {ds.get('SOPInstanceUID', '?')} cannot be decoded "
            f"({type(exc).__name__})"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    return shrink(window_to_uint8(pixels, ds), size)


def thumbnail_of_files(files: Sequence[Path], size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The thumbnail of a series given its files in instance order (the middle one is read)."""
    if not files:
        raise ThumbnailError("the series has no images in the local database")
    path = files[len(files) // 2]
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # damaged file
        raise ThumbnailError(f"{path} cannot be read ({type(exc).__name__})") from exc
    return thumbnail_of_dataset(ds, size)


def _decode_png(content: bytes) -> np.ndarray:
    from PIL import Image  # Pillow comes with highdicom

    with Image.open(io.BytesIO(content)) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def _retrieve_rendered(
    search: DicomWebSearch, study_uid: str, series_uid: str, sop_uid: str, size: int
) -> bytes:
    """WADO-RS ``/rendered`` as a PNG scaled to fit ``size`` x ``size``.

    Sent on the server's session directly: dicomweb-client percent-encodes the comma of
    ``viewport=96,96``, which Orthanc 1.10 refuses (400) where the literal comma works.
    """
    url = (
        f"{search.server.url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        f"/rendered?viewport={size},{size}"
    )
    response = search.client._session.get(url, headers={"Accept": "image/png"})
    response.raise_for_status()
    return response.content


def _middle_instance(
    search: DicomWebSearch, study_uid: str, series_uid: str, n_images: int | None
) -> str:
    """The SOPInstanceUID of the series' middle instance (by InstanceNumber)."""
    if n_images:
        # Series are nearly always numbered 1..n: ask for the middle number (~20 ms on
        # Orthanc, where listing 200 instances takes ~0.5 s); list them all when it is not.
        with server_errors(search.server, f"finding the middle image of series {series_uid}"):
            found = search.client.search_for_instances(
                study_uid,
                series_uid,
                search_filters={"InstanceNumber": str(n_images // 2 + 1)},
                fields=["SOPInstanceUID"],
            )
        uids = [str(Dataset.from_json(item).get("SOPInstanceUID", "")) for item in found]
        if uids and uids[0]:
            return uids[0]
    instances = search.instance_uids(study_uid, series_uid)
    if not instances:
        raise ThumbnailError(f"series {series_uid} has no instances on {search.describe()}")
    return instances[len(instances) // 2][1]


def thumbnail_from_server(
    search: DicomWebSearch,
    study_uid: str,
    series_uid: str,
    size: int = THUMBNAIL_SIZE,
    *,
    rendered: bool = True,
    n_images: int | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """The thumbnail of a server's series: its middle instance, rendered or retrieved.

    Parameters
    ----------
    n_images
        The series' number of instances when known (QIDO-RS announces it): the middle one is
        then asked for by its InstanceNumber, one small query instead of listing them all.
    rendered
        Ask the server to render the image (WADO-RS ``/rendered``, small PNG) first; when it
        cannot (not supported, an error answer), the instance itself is retrieved.

    Raises
    ------
    ServerError
        When the server cannot be reached or refuses (the message names it).
    ThumbnailError
        When the series has no instance or its image cannot be decoded.
    """
    sop_uid = _middle_instance(search, study_uid, series_uid, n_images)
    check_cancel(cancel)
    client = search.client
    if rendered:
        try:
            with server_errors(search.server, f"rendering an image of series {series_uid}"):
                content = _retrieve_rendered(search, study_uid, series_uid, sop_uid, size)
            return shrink(_decode_png(content), size)
        except (ServerAuthError, ServerUnreachable):
            raise
        except (ServerError, OSError, ValueError, ImportError):
            # The server does not render, sent what Pillow cannot read, or there is no
            # Pillow (it comes with highdicom): retrieve the instance instead.
            pass
    check_cancel(cancel)
    with server_errors(search.server, f"retrieving an image of series {series_uid}"):
        ds = client.retrieve_instance(study_uid, series_uid, sop_uid)
    return thumbnail_of_dataset(ds, size)


def series_thumbnail(
    search: DicomSearch,
    series: SeriesRow,
    size: int = THUMBNAIL_SIZE,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """The thumbnail of ``series`` from wherever ``search`` searches.

    Raises
    ------
    ThumbnailError, ServerError
        As :func:`thumbnail_of_files` and :func:`thumbnail_from_server`.
    """
    check_cancel(cancel)
    if isinstance(search, LocalDatabaseSearch):
        files = series.files or search.series_files(series.study_uid, series.series_uid)
        return thumbnail_of_files(files, size)
    if isinstance(search, DicomWebSearch):
        return thumbnail_from_server(
            search,
            series.study_uid,
            series.series_uid,
            size,
            n_images=series.n_images,
            cancel=cancel,
        )
    raise ThumbnailError(f"no thumbnails from {search.describe()}")


__all__ = [
    "THUMBNAIL_SIZE",
    "ThumbnailError",
    "series_thumbnail",
    "shrink",
    "thumbnail_from_server",
    "thumbnail_of_dataset",
    "thumbnail_of_files",
    "window_to_uint8",
]
