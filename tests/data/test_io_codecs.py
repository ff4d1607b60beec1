"""Compressed DICOM (the transfer syntaxes hospital archives use) read back to the same pixels through
meddiff_lab/data/io.py: each test writes the file in that syntax itself.

JPEG Lossless (Process 14) has no encoder among the installed plugins, so :func:`jpeg_lossless` below
writes one (ITU T.81 Annex H: predictor, difference categories, one Huffman table); pylibjpeg-libjpeg
decodes it. RLE, JPEG-LS and JPEG 2000 use pydicom's encoders (native, pyjpegls, pylibjpeg-openjpeg);
JPEG baseline uses Pillow's.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from meddiff_lab.data.io import MedicalFileError, load_dicom, load_radiograph, write_dicom_radiograph


def film(rows: int = 48, columns: int = 40, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A 12-bit film with edges, a gradient and noise: every predictor and category gets exercised."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :columns]
    image = 1500 + 800 * np.sin(x / 5.0) * np.cos(y / 7.0) + 30 * x
    image[10:20, 5:30] += 1200
    image += rng.normal(0, 40, image.shape)
    image[0, 0], image[-1, -1] = 0, 2**bits - 1
    return np.clip(np.rint(image), 0, 2**bits - 1).astype(np.uint16)


def jpeg_lossless(image: np.ndarray, precision: int, predictor: int = 1) -> bytes:
    """Encode a greyscale image as a lossless JPEG (SOF3, one component, point transform 0)."""
    x = image.astype(np.int64)
    rows, columns = x.shape
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]  # first line: the left neighbour
    prediction[1:, 0] = x[:-1, 0]  # first column: the one above
    a, b, c = x[1:, :-1], x[:-1, 1:], x[:-1, :-1]
    prediction[1:, 1:] = {
        1: a,
        2: b,
        3: c,
        4: a + b - c,
        5: a + ((b - c) >> 1),
        6: b + ((a - c) >> 1),
        7: (a + b) >> 1,
    }[predictor]
    difference = (x - prediction) & 0xFFFF
    difference = np.where(difference >= 0x8000, difference - 0x10000, difference)
    bits = []
    for d in difference.ravel().tolist():  # code: 5 bits for category 0..16, then the extra bits
        category = 16 if d == -32768 else abs(d).bit_length()
        bits.append(format(category, "05b"))
        if 0 < category < 16:
            bits.append(format(d if d > 0 else d + (1 << category) - 1, f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    counts = [0] * 16
    counts[4] = 17  # all 17 categories get a 5-bit code: 00000 ... 10000 (canonical order)
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xc3" + (11).to_bytes(2, "big") + bytes([precision]) + rows.to_bytes(2, "big")
    out += columns.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    out += b"\xff\xc4" + (2 + 1 + 16 + 17).to_bytes(2, "big") + b"\x00" + bytes(counts) + bytes(range(17))
    out += b"\xff\xda" + (8).to_bytes(2, "big") + b"\x01\x01\x00" + bytes([predictor, 0, 0])
    return bytes(out + data + b"\xff\xd9")


def as_dicom(stored: np.ndarray, path, syntax, frame: bytes, bits: int = 12):
    path = write_dicom_radiograph(np.zeros(stored.shape), path, bits_stored=bits, window=(2048, 4096))
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax == JPEGBaseline8Bit:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "syntax, predictor",
    [(JPEGLosslessSV1, 1), (JPEGLossless, 1), (JPEGLossless, 4), (JPEGLossless, 6), (JPEGLossless, 7)],
)
def test_jpeg_lossless_process_14_round_trips_exactly(tmp_path, syntax, predictor):
    stored = film()
    path = as_dicom(stored, tmp_path / "ll.dcm", syntax, jpeg_lossless(stored, 12, predictor))
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    volume = load_dicom(path)
    assert np.array_equal(volume.array, stored.astype(np.float32))
    assert load_radiograph(path).meta["voi_source"].startswith("window 2048/4096")


def test_jpeg_lossless_16_bit_and_the_largest_differences(tmp_path):
    stored = film(bits=16) * 16
    stored[5, :] = np.where(np.arange(stored.shape[1]) % 2, 65535, 0)  # +-65535: categories 15 and 16
    path = as_dicom(stored, tmp_path / "ll16.dcm", JPEGLosslessSV1, jpeg_lossless(stored, 16), bits=16)
    assert np.array_equal(load_dicom(path).array, stored.astype(np.float32))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_syntaxes_written_by_pydicom_encoders_round_trip_exactly(tmp_path, syntax):
    if syntax == JPEGLSLossless:
        pytest.importorskip("jpeg_ls", reason="the JPEG-LS encoder (pyjpegls, a test dependency) is not installed")
    image = film() / 4095.0
    path = write_dicom_radiograph(image, tmp_path / "c.dcm", photometric="MONOCHROME1", transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax and ds["PixelData"].is_undefined_length
    plain = write_dicom_radiograph(image, tmp_path / "plain.dcm", photometric="MONOCHROME1")
    assert np.array_equal(load_dicom(path).array, load_dicom(plain).array)
    assert np.array_equal(load_radiograph(path).array, load_radiograph(plain).array)
    assert len(path.read_bytes()) < len(plain.read_bytes()), "it really is compressed"


def test_jpeg_baseline_8_bit_decodes_close_to_the_original(tmp_path):
    from PIL import Image

    stored = (film() >> 4).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95)
    path = as_dicom(stored, tmp_path / "jpg.dcm", JPEGBaseline8Bit, buffer.getvalue(), bits=8)
    decoded = load_dicom(path).array
    pillow = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32)
    assert np.abs(decoded - pillow).max() <= 2, "two decoders of one lossy stream agree within rounding"
    assert np.abs(decoded - stored).mean() < 3 and np.abs(decoded - stored).max() < 40  # lossy, but close


def test_jpeg_2000_lossy_decodes_close_to_the_original(tmp_path):
    image = film() / 4095.0
    path = write_dicom_radiograph(image, tmp_path / "j2k.dcm")
    ds = pydicom.dcmread(path)
    ds.compress(JPEG2000, j2k_cr=[8])  # lossy: 8:1
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000
    error = np.abs(load_dicom(path).array - np.rint(image * 4095))
    assert error.mean() < 40


@pytest.mark.parametrize("cut", [200, -10])
def test_cut_compressed_streams_raise_naming_the_file_instead_of_decoding_garbage(tmp_path, cut):
    stored = film()
    path = as_dicom(stored, tmp_path / "cut.dcm", JPEGLosslessSV1, jpeg_lossless(stored, 12)[:cut])
    with pytest.raises(MedicalFileError, match="cut.dcm.*without its end marker"):
        load_dicom(path)
    from meddiff_lab.data.deid import deidentify_folder

    with pytest.warns(UserWarning, match="skipped 1 of 1"):
        report = deidentify_folder(tmp_path, tmp_path / "out")
    assert "end marker" in report.skipped[0][1]


def test_damaged_compressed_pixel_data_names_the_file(tmp_path):
    stored = film()
    stream = bytearray(jpeg_lossless(stored, 12))
    stream[2:4] = b"\xff\xc9"  # SOF3 -> SOF9 (arithmetic coding): a stream the decoder refuses
    path = as_dicom(stored, tmp_path / "bad.dcm", JPEGLosslessSV1, bytes(stream))
    with pytest.raises(MedicalFileError, match="bad.dcm.*could not be decoded"):
        load_dicom(path)


def test_real_compressed_files_shipped_with_pydicom_decode_like_their_uncompressed_twin():
    from pydicom.data import get_testdata_file

    reference = load_dicom(get_testdata_file("MR_small.dcm")).array
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        assert np.array_equal(load_dicom(get_testdata_file(name)).array, reference), name
