"""Tests of meddiff_lab/data/io.py's NIfTI reader on bad values: NaN/inf voxels and a NaN affine are
refused with a message naming the file (they once passed through silently)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from meddiff_lab.data.io import MedicalFileError, load_nifti


def _write(path, array):
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nifti_with_nonfinite_voxels_is_refused_naming_the_file(tmp_path, value):
    array = np.zeros((4, 4, 3), np.float32)
    array[1, 2, 0] = value
    array[3, 3, 2] = value
    path = _write(tmp_path / "scan.nii.gz", array)
    with pytest.raises(MedicalFileError, match=r"scan.nii.gz: 2 of 48 voxels are NaN or inf"):
        load_nifti(path)
    volume = load_nifti(path, allow_nonfinite=True)  # on request, read as stored
    assert int((~np.isfinite(volume.array)).sum()) == 2


def test_nifti_with_a_nan_affine_names_the_file(tmp_path):
    import struct

    image = nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4))
    image.header["sform_code"] = 1
    path = tmp_path / "bad_header.nii"
    nib.save(image, path)
    data = bytearray(path.read_bytes())
    data[280:284] = struct.pack("<f", float("nan"))  # srow_x[0]: nibabel will not write a NaN affine itself
    path.write_bytes(bytes(data))
    with pytest.raises(MedicalFileError, match=r"bad_header.nii: invalid NIfTI header: .*affine"):
        load_nifti(path)


def test_a_finite_nifti_still_loads(tmp_path):
    path = _write(tmp_path / "ok.nii", np.arange(48, dtype=np.float32).reshape(4, 4, 3))
    assert load_nifti(path).array.sum() == sum(range(48))
